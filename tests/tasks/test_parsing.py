"""The list parser against real-looking LLM answers, good and broken."""

import pytest

from tasks.parsing import ParseResult, parse_list

GOOD = [
    ("numbered with chatter",
     "Sure! Here are 3 topics:\n1. Tides\n2. Volcanoes\n3. Deserts\n\nLet me know if you need more!",
     ["Tides", "Volcanoes", "Deserts"]),
    ("paren numbers", "1) Tides\n2) Volcanoes", ["Tides", "Volcanoes"]),
    ("wrapped numbers", "(1) Tides\n(2) Volcanoes", ["Tides", "Volcanoes"]),
    ("bold items", "1. **Tides**\n2. **Volcanoes**", ["Tides", "Volcanoes"]),
    ("bold numbers", "**1.** Tides\n**2.** Volcanoes", ["Tides", "Volcanoes"]),
    ("bold heading with description",
     "1. **Solar power**: panels on roofs\n2. **Wind power**: turbines at sea",
     ["Solar power: panels on roofs", "Wind power: turbines at sea"]),
    ("markdown headings", "### 1. Climate\nSome detail.\n### 2. Oceans\nMore detail.",
     ["Climate", "Oceans"]),
    ("dash bullets", "Here you go:\n- Tides\n- Volcanoes\n- Deserts", ["Tides", "Volcanoes", "Deserts"]),
    ("star and dot bullets mixed", "* Tides\n* Volcanoes\n• Deserts", ["Tides", "Volcanoes", "Deserts"]),
    ("quoted items", '1. "How do tides form?"\n2. “Why do volcanoes erupt?”',
     ["How do tides form?", "Why do volcanoes erupt?"]),
    ("nested details are not items",
     "1. Solar power\n   - panels\n   - inverters\n2. Wind power\n   - turbines",
     ["Solar power", "Wind power"]),
    ("yaml list", "topics:\n  - history\n  - 'physics'\n  - \"art: modern\"",
     ["history", "physics", "art: modern"]),
    ("yaml fence", "```yaml\n- history\n- physics\n```", ["history", "physics"]),
    ("json array", '["alpha", "beta", "gamma"]', ["alpha", "beta", "gamma"]),
    ("json in fence with chatter",
     'Here is the list:\n```json\n["alpha", "beta"]\n```\nHope this helps!', ["alpha", "beta"]),
    ("json objects with text key",
     '```json\n[{"topic": "Energy", "why": "x"}, {"topic": "Space", "why": "y"}]\n```',
     ["Energy", "Space"]),
    ("json objects, question key",
     '[{"id": 1, "question": "What is A?"}, {"id": 2, "question": "What is B?"}]',
     ["What is A?", "What is B?"]),
    ("json object holding a list", '{"subtopics": ["orbits", "comets"]}', ["orbits", "comets"]),
    ("python-style list", "['orbits', 'comets', 'moons']", ["orbits", "comets", "moons"]),
    ("unclosed fence", '```json\n["orbits", "comets"]', ["orbits", "comets"]),
    ("placeholders stay in text", "1. Write to [name] about [date].\n2. Describe [city].",
     ["Write to [name] about [date].", "Describe [city]."]),
    ("lines without markers", "Renewable energy\nSpace exploration\nAncient history",
     ["Renewable energy", "Space exploration", "Ancient history"]),
    ("year at line start is not a number",
     "1. Moon landing\n2. Mars rovers\n2024: a busy year for launches",
     ["Moon landing", "Mars rovers"]),
    ("multi-line prose answer with numbered questions",
     "Certainly! I have written these questions for you.\n\n1. What causes tides?\n"
     "2. How deep is the ocean?\n\nI hope these are useful.",
     ["What causes tides?", "How deep is the ocean?"]),
]


@pytest.mark.parametrize("raw, expected_items", [(raw, items) for _, raw, items in GOOD],
                         ids=[name for name, _, _ in GOOD])
def test_good_answers_parse(raw, expected_items):
    result = parse_list(raw)
    assert result.drop_reason is None
    assert result.items == expected_items
    assert result.raw == raw


BROKEN = [
    ("none", None, "empty"),
    ("empty", "", "empty"),
    ("whitespace", "  \n\t ", "empty"),
    ("only chatter", "Sure! I'd be happy to help with that.", "no_list_found"),
    ("chatter with intro only", "Here are the topics you asked for:", "no_list_found"),
    ("refusal", "I'm sorry, but I can't help with that request.", "refusal"),
    ("refusal as an AI", "As an AI language model, I cannot produce that content.", "refusal"),
    ("truncated json, no element complete", '["alpha is the first item and it goes on', "truncated_json"),
    ("truncated object list", '[{"question": "What is', "truncated_json"),
    ("malformed closed json", '```json\n["alpha, "beta"]\n```', "invalid_json"),
    ("malformed object", '{"topics": ["a" "b"]}', "invalid_json"),
    ("empty json array", "[]", "empty_list"),
    ("objects with no text", '[{"id": 1, "score": 2}, {"id": 2, "score": 3}]', "json_items_without_text"),
    ("blank items", "1. **\n2. **", "too_few_items"),
]


@pytest.mark.parametrize("raw, reason", [(raw, reason) for _, raw, reason in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_broken_answers_are_drops_with_a_reason(raw, reason):
    result = parse_list(raw)
    assert isinstance(result, ParseResult)
    assert result.items is None
    assert result.drop_reason == reason
    assert not result.ok


def test_truncated_json_keeps_complete_elements_and_says_so():
    result = parse_list('["alpha", "beta", "gam')
    assert result.items == ["alpha", "beta"]
    assert "truncated_json_recovered" in result.notes


def test_truncated_object_array_keeps_complete_objects():
    result = parse_list('[{"question": "What is A?"}, {"question": "What is B?"}, {"quest')
    assert result.items == ["What is A?", "What is B?"]


def test_expected_count_trims_and_notes():
    result = parse_list("1. a\n2. b\n3. c\n4. d", expected=2)
    assert result.items == ["a", "b"]
    assert "trimmed_to_expected:2" in result.notes


def test_fewer_than_min_items_is_a_drop():
    result = parse_list("1. only one", expected=5, min_items=3)
    assert result.items is None and result.drop_reason == "too_few_items"
    assert result.raw == "1. only one"


def test_duplicates_within_one_answer_are_removed_case_and_punctuation_blind():
    result = parse_list("- Tides\n- tides\n- Tides.\n- Volcanoes")
    assert result.items == ["Tides", "Volcanoes"]
    assert "duplicates_removed:2" in result.notes


def test_a_second_list_after_restarted_numbering_is_noted():
    result = parse_list("1. A\n2. B\n\nAlternatively:\n1. C\n2. D")
    assert result.items == ["A", "B"]
    assert "second_list_ignored" in result.notes


def test_objects_without_text_inside_a_good_list_are_noted():
    result = parse_list('[{"topic": "Energy"}, {"id": 3}, "Space"]')
    assert result.items == ["Energy", "Space"]
    assert "json_elements_without_text:1" in result.notes


@pytest.mark.parametrize("garbage", ["{", "]]]", "```", "1.", "- ", "\x00\x01", "[" * 50, "{" * 5000])
def test_garbage_never_raises(garbage):
    result = parse_list(garbage)
    assert result.ok or result.drop_reason
