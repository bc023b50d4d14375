"""The LLM judge: a chat model compares two responses, asked twice with their order swapped.

Rules:
- per group the pair shown is the highest- and the lowest-reward rows among those that can be
  chosen (no reward ranks lowest; with no rewards at all, the first two by response_index); when
  fewer than two can be chosen, truncated rows fill in (they can still lose); fewer than two rows
  -> Pass "too_few_responses";
- every pair is read twice, first-as-A and second-as-A, all in one engine call for the batch, at
  temperature 0 with a seed drawn from `seed` and the item's text;
- a pair is kept only when both readings name the same response: a reading that names neither
  letter (or an engine error) -> Drop "judge_unparseable"; readings that disagree -> Drop
  "judge_position_bias"; a truncated winner -> Pass "preferred_truncated". No verdict is guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engines.types import ChatEngine, ChatRequest, Message
from tasks.llm_step import Drop, Row
from tasks.preferences.judges.base import Decision, Pair, Pass, by_reward, can_be_chosen, response_text
from tasks.templates import Template, load_template

JUDGE = "llm_judge"
ORDERS = ("first_as_A", "second_as_A")
Item = tuple[list[Message], str, str]  # (prompt messages, first response, second response)


def template() -> Template:
    return load_template(Path(__file__).resolve().parent.parent / "templates" / "pairwise_judge.txt")


@dataclass(frozen=True)
class Reading:
    order: str  # "first_as_A" or "second_as_A" (the evidence column says chosen_first / rejected_first)
    verdict: str | None  # "A", "B", or None when the answer names neither (or both)
    raw: str  # the judge's raw answer, or the engine's error text


# Forms that state the verdict outright (words in any case, the letter a capital); a letter elsewhere in
# prose is trusted only when it is the only one and nothing hedges.
_NAME = r"(?i:reply|response|option|assistant)"
_EXPLICIT = [
    re.compile(r"\[\[\s*([ABab])\s*\]\]"),
    re.compile(rf"(?i:\b(?:verdict|answer|choice|winner|decision|better\s+{_NAME}))\s*(?i:is|:|=|-)\s*"
               rf"(?:{_NAME}\s+)?\(?([AB])\b"),
    re.compile(rf"\b{_NAME}\s+([AB])\s+(?i:is|was|wins)\b"),
    re.compile(r"(?:^|[^\w])([AB])\s+(?i:is|was)\s+(?i:clearly\s+|much\s+)?(?i:better|preferred|superior|the\s+better)"),
    re.compile(rf"(?i:\b(?:prefer|choose|pick|select))\s+(?:{_NAME}\s+)?\(?([AB])\b"),
]
_BOTH = re.compile(rf"\b[AB]\s*(?:(?i:and|or)|&|/|,)\s*(?:{_NAME}\s+)?[AB]\b")  # "A and B", "A/B"
_HEDGE = re.compile(r"\b(both|neither|nor|tie|tied|equal|equally|same|cannot|can't|unable|sorry|not)\b", re.IGNORECASE)
_LEADING = re.compile(r"\(?([AB])\)?(?:\s*\n|[.,)]|\s+-)")
_LETTER = re.compile(r"(?<![A-Za-z0-9])([AB])(?![A-Za-z0-9])")
# "A good reply ...": the article, not a verdict; a letter followed by a verb or "because" is a verdict
_ARTICLE = re.compile(r"(?<![A-Za-z0-9])A\s+(?!(?:is|was|wins|because|since|seems|looks|clearly|better|as|for)\b)[a-z]")


def parse_verdict(text: str) -> str | None:
    """"A" or "B" when the answer names exactly one; None for both, neither, a tie, a refusal, nothing."""
    cleaned = re.sub(r"[*_`#]", "", text or "").strip()
    if re.fullmatch(r"\W*([ABab])\W*", cleaned):
        return re.sub(r"\W", "", cleaned).upper()
    if _BOTH.search(cleaned):
        return None
    leading = _LEADING.match(cleaned)  # "B\n\nReason: ...", "A. It is ...": the letter first, then why
    if leading:
        return leading.group(1)
    explicit = {match.group(1).upper() for pattern in _EXPLICIT for match in pattern.finditer(cleaned)}
    if explicit:
        return explicit.pop() if len(explicit) == 1 else None
    if _HEDGE.search(cleaned) or _ARTICLE.search(cleaned):
        return None
    letters = set(_LETTER.findall(cleaned))
    return letters.pop() if len(letters) == 1 else None


def _conversation(messages: list[Message]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def _seed(seed: int, item: Item) -> int:
    digest = hashlib.sha256(json.dumps([seed, *item], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # non-negative int32: every backend takes it


async def ask_both_orders(engine: ChatEngine, items: Sequence[Item], *, max_tokens: int = 64,
                          seed: int = 0) -> list[tuple[Reading, Reading]]:
    """Both readings of every item, all sent in one engine call."""
    body = template()
    requests = []
    for item in items:
        messages, first, second = item
        conversation = _conversation(messages)
        for a, b in ((first, second), (second, first)):
            prompt = body.render(conversation=conversation, response_a=a, response_b=b)
            requests.append(ChatRequest([{"role": "user", "content": prompt}], temperature=0.0,
                                        max_tokens=max_tokens, seed=_seed(seed, item)))
    results = await engine.chat(requests) if requests else []
    readings = []
    for order, result in zip(ORDERS * len(items), results, strict=True):
        if not result.ok:
            readings.append(Reading(order, None, str(result.error)))
        else:
            raw = result.text or ""
            readings.append(Reading(order, parse_verdict(raw), raw))
    return list(zip(readings[0::2], readings[1::2], strict=True))


def _shown_first(reading: Reading, index: int) -> bool:
    """Was response `index` (0: first of the item, 1: second) shown as A in this reading?"""
    return (reading.order == "first_as_A") == (index == 0)


def winner(readings: tuple[Reading, Reading]) -> int | None:
    """0 when the item's first response won both readings, 1 when the second did, else None."""
    picks = set()
    for reading in readings:
        if reading.verdict not in ("A", "B"):
            return None
        picks.add(0 if _shown_first(reading, 0) == (reading.verdict == "A") else 1)
    return picks.pop() if len(picks) == 1 else None


def _pair(group: list[Row]) -> tuple[Row, Row] | None:
    rows = sorted(group, key=lambda row: (row.get("response_index", 0), str(row["id"])))
    pool = [row for row in rows if can_be_chosen(row)]
    pool = pool if len(pool) >= 2 else rows
    if len(pool) < 2:
        return None
    if all(row.get("reward") is None for row in pool):
        return pool[0], pool[1]
    ranked = by_reward(pool)
    return ranked[0], ranked[-1]


def _raw(readings: tuple[Reading, Reading]) -> str:
    return "\n".join(f"{r.order}: {r.raw}" for r in readings)


async def judge_llm(engine: ChatEngine, groups: Sequence[list[Row]], *, max_tokens: int = 64,
                    seed: int = 0) -> list[Decision]:
    """One decision per group, in order; all groups' readings go to the engine in one call."""
    pairs = [_pair(group) for group in groups]
    items = [(p[0]["prompt"], response_text(p[0]), response_text(p[1])) for p in pairs if p]
    answers = iter(await ask_both_orders(engine, items, max_tokens=max_tokens, seed=seed))
    decisions: list[Decision] = []
    for pair in pairs:
        if pair is None:
            decisions.append(Pass(JUDGE, "too_few_responses"))
            continue
        readings = next(answers)
        won = winner(readings)
        if any(r.verdict is None for r in readings):
            decisions.append(Drop("judge_unparseable", _raw(readings)))
        elif won is None:
            decisions.append(Drop("judge_position_bias", _raw(readings)))
        elif not can_be_chosen(pair[won]):
            decisions.append(Pass(JUDGE, "preferred_truncated"))
        else:
            verdicts = [{"order": "chosen_first" if _shown_first(r, won) else "rejected_first",
                         "verdict": r.verdict, "raw": r.raw} for r in readings]
            decisions.append(Pair(JUDGE, pair[won], pair[1 - won],
                                  {"llm_verdicts": verdicts, "judge_model": engine.model_name}))
    return decisions
