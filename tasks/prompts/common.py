"""Small pieces the prompt tasks share: templates, request building, ids, list answers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from engines.types import ChatRequest
from tasks.llm_step import Drop, Row
from tasks.parsing import parse_list
from tasks.templates import Template, load_template
from tasks.user_turns import clean_user_turn

TEMPLATE_DIR = Path(__file__).parent / "templates"


def template(name: str) -> Template:
    return load_template(TEMPLATE_DIR / f"{name}.txt")


def row_id(*parts: object) -> str:
    """Deterministic id: the same content always gets the same id, so reruns never duplicate."""
    blob = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def ask(tpl: Template, values: dict, *, temperature: float, max_tokens: int, seed: int) -> ChatRequest:
    return ChatRequest(
        messages=user_turn(tpl.render(**values)), temperature=temperature, max_tokens=max_tokens, seed=seed
    )


@dataclass
class ListAnswer:
    items: list[str]
    lost: list[Drop]  # items the parser left out of an accepted answer, counted per reason


# parse_list's notes that stand for lost items -> the drop reason they are counted under
_LOST = {"duplicates_removed": "list_duplicate_items", "trimmed_to_expected": "list_items_past_count",
         "blank_items_removed": "list_blank_items", "json_elements_without_text": "list_items_without_text",
         "truncated_json_recovered": "list_truncated_item", "second_list_ignored": "list_second_list"}


def list_items(text: str, expected: int | None) -> ListAnswer | Drop:
    """The items of a list answer with what was left out of it, or a drop that says why there are none."""
    result = parse_list(text, expected=expected)
    if result.items is None:
        return Drop(result.drop_reason or "unparseable_list", text)
    lost = []
    for note in result.notes:
        name, _, count = note.partition(":")
        if name in _LOST:  # other notes (no_list_markers) describe the answer, not a loss
            lost.append(Drop(_LOST[name], text, count=int(count) if count.isdigit() else 1))
    return ListAnswer(result.items, lost)


_PREAMBLE = re.compile(r"^(?:sure|okay|ok|here(?:'s| is)|rewritten|revised)[^:\n]{0,60}:\s*", re.IGNORECASE)


def single_text(text: str) -> str | Drop:
    """A one-item answer (a rewritten question, a follow-up turn) without chatter or quotes."""
    cleaned = _PREAMBLE.sub("", text.strip()).strip().strip('"').strip()
    if len(cleaned) < 8:
        return Drop("empty_answer" if not cleaned else "too_short_answer", text)
    return cleaned


def stable_seed(base: int, *parts: object) -> int:
    """A per-request seed derived from the run seed and the item, reproducible across reruns."""
    return int(row_id(base, *parts)[:8], 16)


def user_text(text: str, tpl: Template) -> str | Drop:
    """A user turn the model wrote from `tpl` (a follow-up, a revised question): filler stripped, and
    a drop when it answers instead of asking, speaks as the assistant or hands back the template."""
    if isinstance(short := single_text(text), Drop):  # empty or too short, whatever else it is
        return short
    turn = clean_user_turn(text, tpl.body)
    return turn if isinstance(turn, Drop) else single_text(turn)
