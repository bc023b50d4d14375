"""Look-up, verification (strict and IFEval's loose variant) and conflict rules."""

from __future__ import annotations

import random
from itertools import combinations
from typing import Any, Sequence

from tasks.instructions.library import INSTRUCTIONS, Instruction


class UnknownInstructionError(KeyError):
    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def get_instruction(instruction_id: str) -> Instruction:
    try:
        return INSTRUCTIONS[instruction_id]
    except KeyError:
        allowed = ", ".join(sorted(INSTRUCTIONS))
        raise UnknownInstructionError(
            f"unknown instruction id {instruction_id!r}; allowed ids: {allowed}"
        ) from None


def check_strict(instruction_id: str, response: str, kwargs: dict[str, Any] | None) -> bool:
    """IFEval's strict verdict: an empty or blank response never follows an instruction."""
    instruction = get_instruction(instruction_id)
    return bool(response.strip()) and instruction.check(response, **(kwargs or {}))


def loose_variants(response: str) -> list[str]:
    """The 8 readings IFEval's loose score tries: as is, without the first and/or last line,
    each with and without every `*` (markdown emphasis)."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    trimmed = [response, without_first, without_last, without_both]
    return trimmed + [text.replace("*", "") for text in trimmed]


def check_loose(instruction_id: str, response: str, kwargs: dict[str, Any] | None) -> bool:
    return any(check_strict(instruction_id, variant, kwargs) for variant in loose_variants(response))


def verify(
    response: str,
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[dict[str, Any] | None],
    loose: bool = False,
) -> list[bool]:
    """One verdict per instruction, in order."""
    if len(instruction_ids) != len(kwargs_list):
        raise ValueError(
            f"{len(instruction_ids)} instruction ids but {len(kwargs_list)} kwargs dicts"
        )
    check = check_loose if loose else check_strict
    return [check(iid, response, kwargs) for iid, kwargs in zip(instruction_ids, kwargs_list)]


# Pairs that cannot both be met, or that make each other's checker misfire.
_CASE = ("change_case:english_capital", "change_case:english_lowercase")
_CONFLICT_PAIRS: list[tuple[str, str]] = [
    ("change_case:english_capital", "change_case:english_lowercase"),
    *[(case, "change_case:capital_word_frequency") for case in _CASE],
    *[(case, "language:response_language") for case in _CASE],
    # Both the options and the section splitter are matched case-sensitively.
    *[(case, "detectable_format:constrained_response") for case in _CASE],
    *[(case, "detectable_format:multiple_sections") for case in _CASE],
    # Our other languages cannot contain English keywords, phrases or a repeated English prompt.
    *[("language:response_language", other) for other in (
        "keywords:existence", "keywords:frequency", "startend:end_checker",
        "length_constraints:nth_paragraph_first_word", "combination:repeat_prompt",
        "detectable_format:constrained_response")],
    # Paragraphs by `***` vs by blank lines; `******` splits into two empty `***` paragraphs.
    ("length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word"),
    ("length_constraints:number_paragraphs", "combination:two_responses"),
    ("length_constraints:nth_paragraph_first_word", "combination:two_responses"),
    # The response must start with the prompt, so it cannot start with a quote or be JSON.
    ("combination:repeat_prompt", "startend:quotation"),
    ("combination:repeat_prompt", "combination:two_responses"),
    ("combination:two_responses", "startend:quotation"),
    ("punctuation:no_comma", "detectable_format:json_format"),
    ("keywords:existence", "keywords:forbidden_words"),  # when drawn from one small pool
]
# JSON output leaves no room for prose layout, and a fixed answer leaves room for nothing.
_EXCLUSIVE = {
    "detectable_format:json_format": [
        i for i in INSTRUCTIONS
        if i.startswith(("detectable_format:", "combination:", "startend:"))
        or i in ("detectable_content:postscript", "length_constraints:number_paragraphs",
                 "length_constraints:nth_paragraph_first_word", "length_constraints:number_sentences")
    ],
    "detectable_format:constrained_response": list(INSTRUCTIONS),
}


def _build_conflicts() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {iid: {iid} for iid in INSTRUCTIONS}
    pairs = _CONFLICT_PAIRS + [(a, b) for a, others in _EXCLUSIVE.items() for b in others]
    for a, b in pairs:
        table[a].add(b)
        table[b].add(a)
    return {iid: frozenset(others) for iid, others in table.items()}


CONFLICTS: dict[str, frozenset[str]] = _build_conflicts()


def find_conflicts(instruction_ids: Sequence[str]) -> list[tuple[str, str]]:
    for iid in instruction_ids:
        get_instruction(iid)
    return [(a, b) for a, b in combinations(instruction_ids, 2) if b in CONFLICTS[a]]


def check_compatible(instruction_ids: Sequence[str]) -> None:
    clashes = find_conflicts(instruction_ids)
    if clashes:
        listed = "; ".join(f"{a} with {b}" for a, b in clashes)
        raise ValueError(f"instructions that cannot be combined: {listed}")


def sample_instruction_ids(
    rng: random.Random, count: int, allowed: Sequence[str] | None = None
) -> list[str]:
    """Draw up to `count` mutually compatible ids (fewer only when the pool runs out)."""
    pool = sorted(allowed) if allowed is not None else sorted(INSTRUCTIONS)
    for iid in pool:
        get_instruction(iid)
    if count > 1:  # an id that excludes the whole pool would leave it alone
        pool = [iid for iid in pool if not CONFLICTS[iid] >= set(pool)]
    rng.shuffle(pool)
    chosen: list[str] = []
    for iid in pool:
        if len(chosen) == count:
            break
        if not any(iid in CONFLICTS[other] for other in chosen):
            chosen.append(iid)
    return chosen
