"""The verifier judge: prompts with verifiable instructions (IFEval kinds) are judged by the checkers.

Rules:
- only rows with instruction ids take part; none in the group -> Pass "no_instructions";
- each response is checked with IFEval's strict semantics, one verdict per instruction;
- chosen follows every instruction (the highest reward among those that can be chosen), rejected
  breaks at least one (the highest reward among the breakers: the hard negative);
- everyone follows -> Pass "all_follow"; no one does -> Pass "none_follow"; the only followers
  are truncated -> Pass "followers_truncated";
- kwargs that are not JSON, not one dict per id, or do not fit their checker, or an unknown
  instruction id -> Pass "instructions_unreadable" (a data problem upstream, not this judge's crash).
"""

from __future__ import annotations

import json
from typing import Any

from tasks.instructions.registry import UnknownInstructionError, verify
from tasks.llm_step import Row
from tasks.preferences.judges.base import Decision, Pair, Pass, by_reward, can_be_chosen, response_text

JUDGE = "verifier"


class InstructionsUnreadable(ValueError):
    """A row's instruction ids or kwargs cannot be checked."""


def _kwargs_list(row: Row, count: int) -> list[dict[str, Any] | None]:
    raw = row.get("instruction_kwargs")
    if raw is None:
        return [None] * count  # checkers without parameters
    try:
        kwargs = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as exc:
        raise InstructionsUnreadable(f"instruction_kwargs is not JSON: {exc}") from None
    if not isinstance(kwargs, list) or len(kwargs) != count or not all(k is None or isinstance(k, dict) for k in kwargs):
        raise InstructionsUnreadable(f"instruction_kwargs must be a list of {count} dicts, got {raw[:200]!r}")
    return kwargs


def checks(row: Row) -> list[dict[str, Any]] | None:
    """[{instruction_id, followed}] per instruction (strict), or None when the row has no instructions.

    Raises InstructionsUnreadable when the ids or kwargs cannot be checked.
    """
    ids = list(row.get("instruction_ids") or [])
    if not ids:
        return None
    kwargs = _kwargs_list(row, len(ids))
    try:
        verdicts = verify(response_text(row), ids, kwargs, loose=False)
    except UnknownInstructionError as exc:
        raise InstructionsUnreadable(str(exc)) from None
    except TypeError as exc:  # kwargs that the checker does not take (or misses one it needs)
        raise InstructionsUnreadable(f"kwargs do not fit their checker: {exc}") from None
    return [{"instruction_id": iid, "followed": bool(ok)} for iid, ok in zip(ids, verdicts)]


def judge_verifier(group: list[Row]) -> Decision:
    rows = [row for row in group if row.get("instruction_ids")]
    if not rows:
        return Pass(JUDGE, "no_instructions")
    try:
        checked = {row["id"]: checks(row) or [] for row in rows}
    except InstructionsUnreadable:
        return Pass(JUDGE, "instructions_unreadable")
    followers = [row for row in rows if all(c["followed"] for c in checked[row["id"]])]
    breakers = [row for row in rows if not all(c["followed"] for c in checked[row["id"]])]
    if not breakers:
        return Pass(JUDGE, "all_follow")
    if not followers:
        return Pass(JUDGE, "none_follow")
    choosable = [row for row in followers if can_be_chosen(row)]
    if not choosable:
        return Pass(JUDGE, "followers_truncated")
    chosen, rejected = by_reward(choosable)[0], by_reward(breakers)[0]
    return Pair(JUDGE, chosen, rejected, {"chosen_checks": checked[chosen["id"]],
                                         "rejected_checks": checked[rejected["id"]]})
