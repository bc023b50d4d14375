"""Instruction checkers against hand-written responses, IFEval's quirks included."""

import random

import pytest

from tasks.instructions import (
    INSTRUCTIONS,
    UnknownInstructionError,
    check_compatible,
    check_loose,
    check_strict,
    find_conflicts,
    get_instruction,
    loose_variants,
    sample_instruction_ids,
    verify,
)
from tasks.prompts.instruction_forms import (
    describe_instruction,
    render_form,
    render_multi_turn,
    render_second_turn,
    render_single_turn,
    template_lineage,
)

EN = "The weather today is pleasant and the children are playing outside in the park"
# id -> (kwargs, responses that pass, responses that fail)
CASES = {
    "keywords:existence": ({"keywords": ["river", "lantern"]},
        ["A Lantern by the river.", "rivers and lanterns"],  # substring match, as IFEval
        ["Only a river here.", "Nothing at all."]),
    "keywords:forbidden_words": ({"forbidden_words": ["river", "bridge"]},
        ["We crossed the stream.", "Rivers are long."],  # whole words only: "Rivers" passes
        ["The River is wide.", "A bridge, at last."]),
    "keywords:frequency": ({"keyword": "tea", "frequency": 3, "relation": "at least"},
        ["Tea, tea and more TEA.", "tea tea steam"],  # "steam" contains "tea"
        ["tea once", "Coffee twice: coffee."]),
    "keywords:letter_frequency": ({"letter": "Z", "let_frequency": 2, "let_relation": "less than"},
        ["A quiet day.", "Lazy afternoon."],
        ["Zebras zigzag.", "jazz"]),
    "language:response_language": ({"language": "fr"},
        ["Le chat dort sur le canapé pendant que la pluie tombe doucement dehors.",
         "Nous allons au marché chaque samedi matin pour acheter des légumes frais."],
        [EN, "Der Hund schläft im Garten und die Sonne scheint den ganzen Tag."]),
    "length_constraints:number_sentences": ({"num_sentences": 3, "relation": "at least"},
        ["One. Two. Three.", "Dr. Smith left. He came back! Why?"],
        ["Just one sentence.", "Dr. Smith arrived. Mr. Jones left."]),  # abbreviations: 2
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2},
        ["First part.\n***\nSecond part.", "***\nFirst.\n***\nSecond.\n***"],
        ["First.\n\nSecond.", "First.\n***\n***\nSecond."]),  # an empty middle paragraph fails
    "length_constraints:number_words": ({"num_words": 5, "relation": "less than"},
        ["Short and sweet.", "It's fine."],  # "It's" counts as two words
        ["One two three four five.", "This one has six words in it"]),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Harbor"},
        ["Boats rest.\n\nHarbor lights glow.", "Boats.\n\n\"Harbor,\" she said."],
        ["Boats rest.\n\nLights glow.", "Harbor first.\n\nHarbor second.\n\nThird."]),
    "detectable_content:number_placeholders": ({"num_placeholders": 2},
        ["Dear [name], see you at [place].", "[a][b][c]"],
        ["Dear [name], see you soon.", "No brackets."]),
    "detectable_content:postscript": ({"postscript_marker": "P.S."},
        ["Bye.\nP.S. Call me.", "Thanks.\n\np. s. see you"],
        ["Bye.\nPS call me.", "Bye.\nP.P.S no"]),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2},
        ["* one\n* two", "Intro\n- one\n  * two"],
        ["* one\n* two\n* three", "**bold**\n* only one"]),
    "detectable_format:constrained_response": ({},
        ["My answer is yes.", "Well... My answer is maybe. Sorry."],
        ["Yes.", "my answer is no."]),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2},
        ["*one* and *two*", "**bold one** and *italic*"],
        ["*one* only", "** ** and * *"]),
    "detectable_format:multiple_sections": ({"section_spliter": "Section", "num_sections": 2},
        ["Section 1\nIntro\nSection 2\nBody", "Section 1 a Section 2 b Section 3 c"],
        ["Section 1\nOnly one", "section 1\nx\nsection 2\ny"]),
    "detectable_format:json_format": ({},
        ['{"a": 1}', '```json\n[1, 2]\n```'],
        ["Here it is: {\"a\": 1}", "```json\n{a: 1}\n```"]),
    "detectable_format:title": ({},
        ["<<A Title>>\nText", "text <<x>>"],
        ["<< >>\ntext", "<<broken\ntitle>>"]),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Write a haiku."},
        ["Write a haiku. Cherry blossoms fall.", "  write a HAIKU. ok"],
        ["Sure! Write a haiku.", "A haiku."]),
    "combination:two_responses": ({},
        ["Answer one.\n******\nAnswer two.", "******\nA\n******\nB\n******"],
        ["Same.\n******\nSame.", "A\n******\n******\nB"]),
    "change_case:english_capital": ({},
        [EN.upper() + ".", "I LIKE TO READ BOOKS ABOUT HISTORY AND SCIENCE EVERY EVENING."],
        # langdetect reads all-caps French as English, so IFEval (and we) only catch case here.
        [EN, "MOSTLY CAPITALS BUT not ALL OF THEM ARE WRITTEN THAT WAY IN THIS SENTENCE."]),
    "change_case:english_lowercase": ({},
        [EN.lower() + ".", "i like to read books about history and science every evening."],
        [EN, "le chat dort sur le canapé pendant que la pluie tombe doucement dehors."]),
    "change_case:capital_word_frequency": ({"capital_frequency": 2, "capital_relation": "at least"},
        ["THIS is VERY good.", "The U.S. and NASA."],
        ["Only One Capital WORD.", "no capitals"]),
    "startend:end_checker": ({"end_phrase": "Any other questions?"},
        ["That is all. Any other questions?", '"Done. any other questions?"  '],
        ["Any other questions? Bye.", "That is all."]),
    "startend:quotation": ({},
        ['"Hello there."', '  "x"  '],
        ['"', "'single quotes'"]),
    "punctuation:no_comma": ({},
        ["No commas here.", "Full-width，comma is fine."],
        ["One, two.", "a,b"]),
}


def test_every_required_id_is_covered():
    assert set(CASES) == set(INSTRUCTIONS)


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_checker_passes_and_fails_hand_written_responses(instruction_id):
    kwargs, passing, failing = CASES[instruction_id]
    assert len(passing) >= 2 and len(failing) >= 2
    for response in passing:
        assert check_strict(instruction_id, response, kwargs), response
    for response in failing:
        assert not check_strict(instruction_id, response, kwargs), response


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_blank_response_never_follows(instruction_id):
    assert not check_strict(instruction_id, "  \n", CASES[instruction_id][0])


def test_loose_variants_are_ifevals_eight():
    variants = loose_variants("Intro line\n*body*\nOutro")
    assert variants == ["Intro line\n*body*\nOutro", "*body*\nOutro", "Intro line\n*body*",
                        "*body*", "Intro line\nbody\nOutro", "body\nOutro", "Intro line\nbody", "body"]


@pytest.mark.parametrize("instruction_id, kwargs, response", [
    ("startend:quotation", {}, 'Here you go:\n"All wrapped."'),  # first line removed
    ("startend:end_checker", {"end_phrase": "Bye now."}, "Text. Bye now.\nHope it helps!"),
    ("detectable_format:json_format", {}, 'Sure:\n{"a": 1}\nEnjoy.'),  # both lines removed
    ("punctuation:no_comma", {}, "Sure, here it is:\nNo commas below."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "**Say hi.** Hi!"),  # asterisks
])
def test_loose_accepts_what_strict_rejects(instruction_id, kwargs, response):
    assert not check_strict(instruction_id, response, kwargs)
    assert check_loose(instruction_id, response, kwargs)


def test_loose_still_rejects_real_failures():
    assert not check_loose("punctuation:no_comma", "a, b\nc, d\ne, f", {})
    assert not check_loose("detectable_format:title", "no title\nat all", None)


def test_verify_keeps_order_and_modes():
    ids = ["punctuation:no_comma", "startend:quotation"]
    response = 'Intro, sure\n"Wrapped"'
    assert verify(response, ids, [{}, {}]) == [False, False]
    assert verify(response, ids, [{}, {}], loose=True) == [True, True]
    with pytest.raises(ValueError, match="2 instruction ids but 1"):
        verify(response, ids, [{}])


def test_unknown_id_names_the_allowed_ids():
    with pytest.raises(UnknownInstructionError) as err:
        get_instruction("keywords:nonexistent")
    message = str(err.value)
    assert "keywords:nonexistent" in message and "punctuation:no_comma" in message
    with pytest.raises(UnknownInstructionError):
        verify("x", ["nope"], [{}])


def test_relation_outside_ifevals_two_is_an_error():
    with pytest.raises(ValueError, match="relation must be one of"):
        check_strict("length_constraints:number_words", "a b", {"num_words": 3, "relation": "at most"})


def _satisfying_response(instruction_id, kwargs):
    """A response written to meet the drawn kwargs."""
    if instruction_id == "keywords:existence":
        return "We talked about " + " and ".join(kwargs["keywords"]) + "."
    if instruction_id == "length_constraints:nth_paragraph_first_word":
        paragraphs = [f"Paragraph {i} text." for i in range(kwargs["num_paragraphs"])]
        paragraphs[kwargs["nth_paragraph"] - 1] = kwargs["first_word"].title() + " begins here."
        return "\n\n".join(paragraphs)
    if instruction_id == "detectable_format:number_bullet_lists":
        return "\n".join(f"* point {i}" for i in range(kwargs["num_bullets"]))
    if instruction_id == "detectable_format:multiple_sections":
        return "\n".join(f"{kwargs['section_spliter']} {i}\ntext" for i in range(1, kwargs["num_sections"] + 1))
    if instruction_id == "length_constraints:number_paragraphs":
        return "\n***\n".join(f"Part {i}." for i in range(kwargs["num_paragraphs"]))
    if instruction_id == "detectable_content:postscript":
        return f"Main text.\n{kwargs['postscript_marker']} a note."
    if instruction_id == "combination:repeat_prompt":
        return kwargs["prompt_to_repeat"] + " Here is my answer."
    raise AssertionError(instruction_id)


@pytest.mark.parametrize("instruction_id", [
    "keywords:existence", "length_constraints:nth_paragraph_first_word",
    "detectable_format:number_bullet_lists", "detectable_format:multiple_sections",
    "length_constraints:number_paragraphs", "detectable_content:postscript",
    "combination:repeat_prompt",
])
@pytest.mark.parametrize("seed", range(5))
def test_drawn_kwargs_are_accepted_by_their_checker(instruction_id, seed):
    kwargs = get_instruction(instruction_id).make_kwargs(random.Random(seed), "Describe a lighthouse.")
    assert check_strict(instruction_id, _satisfying_response(instruction_id, kwargs), kwargs)


@pytest.mark.parametrize("instruction_id", sorted(INSTRUCTIONS))
def test_every_id_draws_kwargs_reproducibly_and_renders_a_sentence(instruction_id):
    instruction = get_instruction(instruction_id)
    first = instruction.make_kwargs(random.Random(7), "Describe a lighthouse.")
    assert first == instruction.make_kwargs(random.Random(7), "Describe a lighthouse.")
    sentence = describe_instruction(instruction_id, first)
    assert sentence and "{" not in sentence
    check_strict(instruction_id, "Some response.", first)  # the kwargs fit the checker


def test_less_than_thresholds_are_never_impossible():
    for seed in range(200):
        kwargs = get_instruction("length_constraints:number_sentences").make_kwargs(random.Random(seed))
        assert kwargs["relation"] == "at least" or kwargs["num_sentences"] >= 2


def test_repeat_prompt_needs_the_prompt():
    with pytest.raises(ValueError, match="needs the prompt"):
        get_instruction("combination:repeat_prompt").make_kwargs(random.Random(0), "")


def test_conflicts():
    assert find_conflicts(["change_case:english_lowercase", "change_case:capital_word_frequency"])
    assert find_conflicts(["detectable_format:json_format", "detectable_format:title"])
    assert not find_conflicts(["punctuation:no_comma", "detectable_format:title"])
    with pytest.raises(ValueError, match="cannot be combined"):
        check_compatible(["change_case:english_capital", "change_case:english_lowercase"])
    for seed in range(30):
        ids = sample_instruction_ids(random.Random(seed), 3)
        assert len(ids) == 3 and not find_conflicts(ids)


KW = {"num_paragraphs": 3}


def test_single_turn_form():
    messages = render_single_turn("Describe a lighthouse.",
                                  ["length_constraints:number_paragraphs", "punctuation:no_comma"], [KW, {}])
    assert len(messages) == 1 and messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert content.startswith("Describe a lighthouse.\n\n")
    assert "exactly 3 paragraphs" in content and "***" in content
    assert "Do not use any commas" in content


def test_multi_turn_form_says_the_rule_holds_for_later_turns():
    messages = render_multi_turn("Describe a lighthouse.", ["punctuation:no_comma"], [{}])
    content = messages[0]["content"]
    assert content.startswith("Describe a lighthouse.")
    assert "every later reply" in content and "Do not use any commas" in content


def test_second_turn_form_asks_for_a_revision():
    messages = render_second_turn("Describe a lighthouse.", "It is a tall tower, by the sea.",
                                  ["punctuation:no_comma"], [{}])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "It is a tall tower, by the sea."
    assert messages[2]["content"].startswith("Revise your previous answer so that it")
    assert "Do not use any commas" in messages[2]["content"]
    assert render_form("second_turn", "Describe a lighthouse.", ["punctuation:no_comma"], [{}],
                       first_answer="It is a tall tower, by the sea.") == messages


def test_forms_refuse_bad_input():
    with pytest.raises(ValueError, match="cannot be combined"):
        render_single_turn("x", ["change_case:english_capital", "change_case:english_lowercase"], [{}, {}])
    with pytest.raises(UnknownInstructionError):
        render_single_turn("x", ["no:such_id"], [{}])
    with pytest.raises(ValueError, match="first answer"):
        render_form("second_turn", "x", ["punctuation:no_comma"], [{}])
    with pytest.raises(Exception, match="num_paragraphs"):
        render_single_turn("x", ["length_constraints:number_paragraphs"], [{}])


def test_template_lineage_names_id_and_version():
    lineage = template_lineage("multi_turn")
    assert lineage["template_id"] == "prompts.instruction_multi_turn"
    assert lineage["template_version"] == "1"
    assert lineage["sentences_template_id"] == "prompts.instruction_sentences"
