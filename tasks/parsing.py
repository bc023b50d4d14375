"""One parser for every list an LLM writes: numbered, bulleted, YAML, JSON, with chatter.

`parse_list(raw)` never raises on model output. It returns a `ParseResult` whose `items` is a
list of clean strings, or None with a `drop_reason` that the batch report counts
(`empty`, `refusal`, `truncated_json`, `invalid_json`, `empty_list`,
`json_items_without_text`, `no_list_found`, `too_few_items`). Anything it leaves out of an accepted answer (a truncated last JSON
element, duplicates, items past `expected`, a second list) is named in `notes`, so no item
is lost silently.

    >>> parse_list("Sure! Here are 2 topics:\\n1. **Tides**\\n2) Volcanoes\\nLet me know!").items
    ['Tides', 'Volcanoes']
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

DropReason = str

# Keys that hold the text of an item when a model answers with a JSON array of objects.
TEXT_KEYS = ("text", "question", "prompt", "instruction", "task", "problem", "topic",
             "subtopic", "title", "name", "item", "content", "value", "description")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", flags=re.DOTALL)
# "1." "1)" "(1)" "1:" "1 -" "#1." optionally in a heading or bold; 3 digits at most, so a
# line that opens with a year ("2024: ...") is not an item.
_NUMBERED = re.compile(
    r"^(\s*)(?:#+\s*)?(?:\*\*)?(?:\((\d{1,3})\)|#?(\d{1,3})[.):]|(\d{1,3})\s+-)(?:\*\*)?\s+(.*)$")
_BULLETED = re.compile(r"^(\s*)([-*•+‣◦▪])\s+(.*)$")
_REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|unable|not able)|I apologi[sz]e|I (?:cannot|can't|can not|won't)"
    r"|as an AI\b)", flags=re.IGNORECASE)
_CHATTER = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|great|here (?:are|is)|below (?:are|is)"
    r"|i hope|let me know|feel free|note:|these (?:topics|questions|are)|happy to)\b",
    flags=re.IGNORECASE)
_QUOTES = "\"'“”‘’`"


@dataclass(frozen=True)
class ParseResult:
    items: list[str] | None
    drop_reason: DropReason | None
    raw: str
    notes: tuple[str, ...] = field(default=())  # what an accepted answer lost, and why

    @property
    def ok(self) -> bool:
        return self.items is not None


def clean_item(text: str) -> str:
    """Strip markdown emphasis, code ticks, wrapping quotes and list punctuation."""
    text = text.strip()
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)  # **bold** / __bold__ anywhere
    text = text.strip().strip("*_").strip()
    text = text.rstrip(",;").strip()  # YAML/JSON-ish lines: "topic",
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return re.sub(r"\s+", " ", text)


def _from_json_value(value: object, notes: list[str]) -> list[str] | None:
    """Items from a decoded JSON value; None when it holds no list at all."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if not lists:
            return None
        value = lists[0]
    if not isinstance(value, list):
        return None
    items, skipped = [], 0
    for element in value:
        text = _element_text(element)
        if text is None:
            skipped += 1
        else:
            items.append(text)
    if skipped:
        notes.append(f"json_elements_without_text:{skipped}")
    return items


def _element_text(element: object) -> str | None:
    if isinstance(element, str):
        return element
    if isinstance(element, (int, float)) and not isinstance(element, bool):
        return str(element)
    if isinstance(element, dict):
        lowered = {str(k).lower(): v for k, v in element.items()}
        for key in TEXT_KEYS:
            if isinstance(lowered.get(key), str):
                return lowered[key]
        strings = [v for v in element.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    return None


def _recover_truncated_array(text: str) -> list[object]:
    """Decode complete elements of a JSON array cut off mid-way (max_tokens hit)."""
    decoder, elements = json.JSONDecoder(), []
    position = text.index("[") + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            element, position = decoder.raw_decode(text, position)
        except ValueError:
            return elements
        elements.append(element)


def _try_json(text: str, notes: list[str]) -> tuple[list[str] | None, DropReason | None]:
    """(items, None) on success, (None, reason) for broken JSON, (None, None) if not JSON."""
    start = _json_start(text)
    if start is None:
        return None, None
    body = text[start:]
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except ValueError:
        value = _python_literal(body)
    if value is not None:
        items = _from_json_value(value, notes)
        return (items, None) if items is not None else (None, None)
    closed = body.rstrip().rstrip("`").rstrip().endswith(("]", "}"))
    if closed:
        return None, "invalid_json"  # complete but malformed: guessing would invent items
    if "[" in body:  # a bare array, or the list inside {"topics": [...
        recovered = _from_json_value(_recover_truncated_array(body), notes) or []
        if recovered:
            notes.append("truncated_json_recovered")
            return recovered, None
    return None, "truncated_json"


def _json_start(text: str) -> int | None:
    # A bracket that opens a line (or the answer) starts JSON; "[name]" inside prose does not.
    match = re.search(r"^[ \t]*([\[{])", text, flags=re.MULTILINE)
    return match.start(1) if match else None


def _python_literal(body: str) -> object | None:
    end = body.rfind("]") if body.startswith("[") else body.rfind("}")
    # Only single-quoted lists: Python would glue broken JSON like ["a" "b"] into "ab".
    if end < 0 or '"' in body:
        return None
    try:
        return ast.literal_eval(body[: end + 1])  # ['a', 'b'] written Python-style
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _marked_lines(text: str, notes: list[str]) -> list[str]:
    """Items of the outermost numbered or bulleted list; nested details are not items."""
    found: list[tuple[int, str, int | None, str]] = []  # indent, kind, number, text
    for line in text.splitlines():
        numbered, bulleted = _NUMBERED.match(line), _BULLETED.match(line)
        if numbered and numbered.group(5).strip():
            number = next(int(g) for g in numbered.group(2, 3, 4) if g)
            found.append((len(numbered.group(1)), "numbered", number, numbered.group(5)))
        elif bulleted and bulleted.group(3).strip():
            # All bullet glyphs are one kind: models mix "*" and "•" within one list.
            found.append((len(bulleted.group(1)), "bulleted", None, bulleted.group(3)))
    if not found:
        return []
    outer = min(indent for indent, *_ in found)
    kinds = [kind for indent, kind, _, _ in found if indent == outer]
    kind = max(dict.fromkeys(kinds), key=kinds.count)  # most common; first on a tie
    items, last_number = [], 0
    for indent, this_kind, number, body in found:
        if indent != outer or this_kind != kind:
            continue
        if number is not None and number <= last_number:
            notes.append("second_list_ignored")  # numbering restarted: another list follows
            break
        last_number = number or last_number
        items.append(body)
    return items


def _plain_lines(text: str) -> list[str]:
    """One item per line when a model drops the markers; intros and sign-offs are skipped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if not line.endswith(":") and not _CHATTER.match(line)
            and not line.startswith(("```", "#"))]
    sentence_like = [line for line in kept if len(line) > 200]
    return kept if len(kept) >= 2 and not sentence_like else []


def _extract(raw: str, notes: list[str]) -> tuple[list[str] | None, DropReason | None]:
    fenced = [(lang.lower(), body) for lang, body in _FENCE.findall(raw)]
    for lang, body in fenced:
        if lang in ("json", "") or body.lstrip().startswith(("[", "{")):
            items, reason = _try_json(body, notes)
            if items is not None or (reason and lang == "json"):
                return items, reason
    outside = _FENCE.sub("\n", raw)
    for text in [body for _, body in fenced] + [outside]:
        items = _marked_lines(text, notes)
        if items:
            return items, None
    items, reason = _try_json(raw, notes)
    if items is not None or reason:
        return items, reason
    items = _plain_lines(outside)
    if items:
        notes.append("no_list_markers")
        return items, None
    return None, "refusal" if _REFUSAL.search(raw) else "no_list_found"


def _dedupe(items: list[str], notes: list[str]) -> list[str]:
    seen, unique = set(), []
    for item in items:
        key = re.sub(r"\W+", " ", item.casefold()).strip()
        if key not in seen:
            seen.add(key)
            unique.append(item)
    if len(unique) < len(items):
        notes.append(f"duplicates_removed:{len(items) - len(unique)}")
    return unique


def parse_list(raw: str | None, expected: int | None = None, min_items: int = 1) -> ParseResult:
    """Parse an LLM list answer; keep at most `expected` items, drop if fewer than `min_items`."""
    raw_text = raw or ""
    if not raw_text.strip():
        return ParseResult(None, "empty", raw_text)
    notes: list[str] = []
    found, reason = _extract(raw_text, notes)
    if found is None:
        return ParseResult(None, reason, raw_text, tuple(notes))
    cleaned = [clean_item(item) for item in found]
    if any(not item for item in cleaned):
        notes.append(f"blank_items_removed:{sum(1 for item in cleaned if not item)}")
    items = _dedupe([item for item in cleaned if item], notes)
    if not found:
        reason = "json_items_without_text" if notes else "empty_list"
        return ParseResult(None, reason, raw_text, tuple(notes))
    if expected is not None and len(items) > expected:
        notes.append(f"trimmed_to_expected:{len(items) - expected}")
        items = items[:expected]
    if len(items) < max(min_items, 1):
        return ParseResult(None, "too_few_items", raw_text, tuple(notes))
    return ParseResult(items, None, raw_text, tuple(notes))
