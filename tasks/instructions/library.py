"""The verifiable instructions, keyed by IFEval instruction id.

An instruction is data: its id, how to draw kwargs for it (seeded, so a row can be rebuilt
from its seed), how its kwargs read in a sentence, and its checker. The sentences themselves
are a template file (`templates/instruction_sentences.txt`), not strings in code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from tasks.instructions import checks_content as content
from tasks.instructions import checks_format as layout
from tasks.instructions.text import KEYWORD_POOL, LANGUAGE_NAMES

Kwargs = dict[str, Any]

END_PHRASES = ("Is there anything else you would like to know?", "That is all for now.",
               "Hope this helps.", "Thanks for reading.")
POSTSCRIPT_MARKERS = ("P.S.", "P.P.S")
SECTION_SPLITTERS = ("Section", "SECTION")


@dataclass(frozen=True)
class Instruction:
    id: str
    check: Callable[..., bool]  # check(response, **kwargs) -> bool
    draw: Callable[[random.Random, str], Kwargs]  # (rng, prompt) -> kwargs
    # kwargs -> the fields the sentence template uses (lists joined, codes named, ...)
    describe: Callable[[Kwargs], dict[str, Any]] = field(default=lambda kwargs: dict(kwargs))

    def make_kwargs(self, rng: random.Random, prompt: str = "") -> Kwargs:
        return self.draw(rng, prompt)


def _relation_and_threshold(rng: random.Random, low: int, high: int) -> tuple[str, int]:
    # "less than 1" can never be met, so a less-than threshold starts at 2.
    relation = rng.choice(content.RELATIONS)
    return relation, rng.randint(max(low, 2) if relation == "less than" else low, high)


def _quoted(words: list[str]) -> str:
    return ", ".join(f'"{word}"' for word in words)


def _no_kwargs(rng: random.Random, prompt: str) -> Kwargs:
    return {}


def _keywords(rng, prompt):
    return {"keywords": sorted(rng.sample(KEYWORD_POOL, 2))}


def _forbidden(rng, prompt):
    return {"forbidden_words": sorted(rng.sample(KEYWORD_POOL, 2))}


def _keyword_frequency(rng, prompt):
    relation, frequency = _relation_and_threshold(rng, 1, 4)
    return {"keyword": rng.choice(KEYWORD_POOL), "frequency": frequency, "relation": relation}


def _letter_frequency(rng, prompt):
    relation, frequency = _relation_and_threshold(rng, 1, 10)
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return {"letter": letter, "let_frequency": frequency, "let_relation": relation}


def _language(rng, prompt):
    return {"language": rng.choice(sorted(code for code in LANGUAGE_NAMES if code != "en"))}


def _sentences(rng, prompt):
    relation, count = _relation_and_threshold(rng, 1, 20)
    return {"num_sentences": count, "relation": relation}


def _words(rng, prompt):
    relation, count = _relation_and_threshold(rng, 50, 400)
    return {"num_words": count, "relation": relation}


def _paragraphs(rng, prompt):
    return {"num_paragraphs": rng.randint(2, 5)}


def _nth_paragraph(rng, prompt):
    total = rng.randint(2, 5)
    return {"num_paragraphs": total, "nth_paragraph": rng.randint(1, total),
            "first_word": rng.choice(KEYWORD_POOL)}


def _capital_frequency(rng, prompt):
    relation, count = _relation_and_threshold(rng, 1, 20)
    return {"capital_frequency": count, "capital_relation": relation}


def _repeat(rng, prompt):
    if not prompt.strip():
        raise ValueError("combination:repeat_prompt needs the prompt text to draw its kwargs")
    return {"prompt_to_repeat": prompt.strip()}


def _simple(check, draw=_no_kwargs, describe=None) -> dict[str, Any]:
    spec: dict[str, Any] = {"check": check, "draw": draw}
    if describe is not None:
        spec["describe"] = describe
    return spec


_SPECS: dict[str, dict[str, Any]] = {
    "keywords:existence": _simple(
        content.keywords_present, _keywords, lambda k: {"keywords": _quoted(k["keywords"])}),
    "keywords:forbidden_words": _simple(
        content.forbidden_words_absent, _forbidden,
        lambda k: {"forbidden_words": _quoted(k["forbidden_words"])}),
    "keywords:frequency": _simple(content.keyword_frequency, _keyword_frequency),
    "keywords:letter_frequency": _simple(content.letter_frequency, _letter_frequency),
    "language:response_language": _simple(
        content.response_language, _language,
        lambda k: {"language": LANGUAGE_NAMES.get(k["language"], k["language"])}),
    "length_constraints:number_sentences": _simple(content.number_sentences, _sentences),
    "length_constraints:number_paragraphs": _simple(layout.number_paragraphs, _paragraphs),
    "length_constraints:number_words": _simple(content.number_words, _words),
    "length_constraints:nth_paragraph_first_word": _simple(
        layout.nth_paragraph_first_word, _nth_paragraph),
    "detectable_content:number_placeholders": _simple(
        layout.number_placeholders, lambda rng, p: {"num_placeholders": rng.randint(1, 4)}),
    "detectable_content:postscript": _simple(
        layout.postscript, lambda rng, p: {"postscript_marker": rng.choice(POSTSCRIPT_MARKERS)}),
    "detectable_format:number_bullet_lists": _simple(
        layout.number_bullet_lists, lambda rng, p: {"num_bullets": rng.randint(2, 6)}),
    "detectable_format:constrained_response": _simple(
        layout.constrained_response, describe=lambda k: {
            "options": _quoted(list(layout.CONSTRAINED_OPTIONS))}),
    "detectable_format:number_highlighted_sections": _simple(
        layout.number_highlighted_sections, lambda rng, p: {"num_highlights": rng.randint(1, 4)}),
    "detectable_format:multiple_sections": _simple(
        layout.multiple_sections, lambda rng, p: {
            "section_spliter": rng.choice(SECTION_SPLITTERS), "num_sections": rng.randint(2, 5)}),
    "detectable_format:json_format": _simple(layout.json_format),
    "detectable_format:title": _simple(layout.title),
    "combination:repeat_prompt": _simple(layout.repeat_prompt, _repeat),
    "combination:two_responses": _simple(layout.two_responses),
    "change_case:english_capital": _simple(content.english_capital),
    "change_case:english_lowercase": _simple(content.english_lowercase),
    "change_case:capital_word_frequency": _simple(content.capital_word_frequency, _capital_frequency),
    "startend:end_checker": _simple(
        content.end_phrase, lambda rng, p: {"end_phrase": rng.choice(END_PHRASES)}),
    "startend:quotation": _simple(content.wrapped_in_quotes),
    "punctuation:no_comma": _simple(content.no_comma),
}

INSTRUCTIONS: dict[str, Instruction] = {
    instruction_id: Instruction(id=instruction_id, **spec) for instruction_id, spec in _SPECS.items()
}
