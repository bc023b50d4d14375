"""Filler stripping and the three detectors, on tables of real-looking user turns."""

import pytest

from tasks.dialogues.roleplay import user_template
from tasks.llm_step import Drop
from tasks.user_turns import answers_instead_of_asking, clean_user_turn, echoes_template, strip_filler

# (what the user model wrote, what is kept, or the drop reason)
STRIPPING = [
    ("Can you make it vegetarian?", "Can you make it vegetarian?"),
    ("Thank you so much! Can you make it vegetarian?", "Can you make it vegetarian?"),
    ("Thanks for the explanation. What about in winter?", "What about in winter?"),
    ("Great question! How long does it keep in the fridge?", "How long does it keep in the fridge?"),
    ("Sure, I'd be happy to help with that. Can you give me a shorter version?", "Can you give me a shorter version?"),
    ("That's really helpful, thanks. Now do it for three people.", "Now do it for three people."),
    ('User: "how much does it cost"', "how much does it cost"),
    ("Here is my next message: Why is the sky darker at noon in winter?", "Why is the sky darker at noon in winter?"),
    ("Make it shorter. Thanks in advance!", "Make it shorter."),
    ("that's not what i asked", "that's not what i asked"),
    ("No, I meant the other recipe.", "No, I meant the other recipe."),
    ("Actually, I only have an hour.", "Actually, I only have an hour."),
    ("Is a fixed gear harder to ride?\n\nYou: It is, at first.\n\nUser: Why?", "Is a fixed gear harder to ride?"),
    ("Thank you!", "empty_after_stripping"),
    ("Thanks so much, that's great!", "empty_after_stripping"),
    ("As an AI language model, I can help you plan meals.", "speaks_as_assistant"),
    ("You're a helpful AI assistant named SmolLM, trained by Hugging Face.", "speaks_as_assistant"),
    ("Assistant: The capital of France is Paris.", "speaks_as_assistant"),
    ("Here is the rewritten request: Explain tides in detail.", "speaks_as_assistant"),
    ("Let me know if you have any other questions about the recipe!", "speaks_as_assistant"),
    ("Here are three tips for keeping basil fresh: trim the stems, put them in water, and keep them out of the fridge.",
     "answers_instead_of_asking"),
    ("1. Preheat the oven to 200C.\n2. Slice the potatoes thin.\n3. Bake for 40 minutes.", "answers_instead_of_asking"),
    ("The tides are caused mainly by the gravitational pull of the Moon on the oceans of the Earth, together with "
     "the weaker pull of the Sun. As the Earth rotates, each place passes through two bulges of water each day, "
     "which is why most coasts see two high tides and two low tides roughly every twenty-four hours and fifty "
     "minutes, with spring tides when the Sun and Moon line up.", "answers_instead_of_asking"),
]


@pytest.mark.parametrize("written, expected", STRIPPING)
def test_user_turns_are_kept_stripped_or_dropped(written, expected):
    result = clean_user_turn(written)
    if isinstance(result, Drop):
        assert result.reason == expected and result.raw == written
    else:
        assert result == expected


ANSWERS = [
    ("What is the best time to plant garlic?", False),
    ("Write it as a limerick instead.", False),
    ("too long. two lines max", False),
    ("I need this for a class of thirteen-year-olds, so please keep the words simple.", False),
    ("Here's a simple plan for your week.", True),
    ("The answer is 42 because six times seven is forty-two.", True),
    ("- flour\n- sugar\n- eggs", True),
    ("Photosynthesis is the process " + "by which plants turn light into sugar " * 10, True),
]


@pytest.mark.parametrize("text, answers", ANSWERS)
def test_the_answer_detector(text, answers):
    assert answers_instead_of_asking(text) is answers


def test_a_turn_that_hands_back_our_request_echoes_the_template():
    body = user_template().body
    leaked = "Write the next message this person sends to the assistant. It can be a follow-up question."
    assert echoes_template(leaked, body)
    assert clean_user_turn(leaked, body).reason == "echoes_template"
    assert not echoes_template("Can you tell me the next step after kneading the dough?", body)
    assert echoes_template("Why is the sky blue?\n\nHow you write: chatty but precise", body)  # a field label
    assert clean_user_turn("The AI assistant: basil keeps in water.").reason == "speaks_as_assistant"


def test_stripping_leaves_an_ordinary_turn_alone():
    turn = "Could you compare the two options in a table?"
    assert strip_filler(turn) == turn


# What the embedded model wrote in a quickstart night where a user turn belonged, and the drop it now is.
FOLLOW_UPS = [
    ("You're a helpful AI assistant named SmolLM, trained by Hugging Face. How can I help?", "follow_up_speaks_as_assistant"),
    ("Assistant: You can boil the egg for six minutes for a soft yolk.", "follow_up_speaks_as_assistant"),
    ("Here are the steps: 1. Boil water. 2. Add the egg. 3. Wait nine minutes.", "follow_up_answers_instead_of_asking"),
    ("Write the user's next message: a natural follow-up that builds on the assistant's answer.", "follow_up_echoes_template"),
    ("Thank you!", "follow_up_empty_after_stripping"),
    ("Thanks! Can I do the same with duck eggs?", None),
]
REVISIONS = [
    ("Here is the rewritten request: Write a poem about the sea.", "revision_speaks_as_assistant"),
    ("The sea rolls grey beneath the morning sky, " * 8, "revision_answers_instead_of_asking"),
    ("Rewrite it so that it asks for more detail or is harder to answer well, for example by adding a constraint.",
     "revision_echoes_template"),
    ("Write a forty-line poem about the sea for a retiring fisherman, in a warm and plain tone.", None),
]


def run(coro):
    import asyncio

    return asyncio.run(coro)


@pytest.mark.parametrize("written, reason", FOLLOW_UPS)
def test_the_prompts_stage_drops_follow_ups_that_are_not_user_turns(written, reason):
    from engines.scripted import ScriptedChatEngine
    from tasks.prompts.config import PromptsStage
    from tasks.prompts.two_turn import generate_two_turn

    seeds = [{"id": "s1", "task_type": "seed", "source": "seed", "messages": [{"role": "user", "content": "How do I boil an egg?"}]}]

    def script(req):
        return written if "Write the user's next message" in req.messages[0]["content"] else "Boil it for nine minutes."

    out = run(generate_two_turn(ScriptedChatEngine(script), seeds, PromptsStage(), seed=0))
    assert [d.reason for d in out.drops] == ([reason] if reason else [])
    assert len(out.rows) == (0 if reason else 1)
    if reason:
        assert out.drops[0].raw == written


@pytest.mark.parametrize("written, reason", REVISIONS)
def test_the_prompts_stage_drops_revisions_that_are_not_requests(written, reason):
    from engines.scripted import ScriptedChatEngine
    from tasks.prompts.config import PromptsStage
    from tasks.prompts.questions import revise_questions

    task_type = "writing" if "sea" in written or "poem" in written else "open_qa"
    rows = [{"id": "q1", "task_type": task_type, "messages": [{"role": "user", "content": "Write a poem about the sea."}]}]
    out = run(revise_questions(ScriptedChatEngine(lambda req: written), task_type, rows, PromptsStage(), 0))
    assert [d.reason for d in out.drops] == ([reason] if reason else [])
    assert len(out.rows) == (0 if reason else 1)
