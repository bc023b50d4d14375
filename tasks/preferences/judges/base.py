"""What every judge answers for one prompt's scored responses: a pair, a pass, or a drop.

A judge sees a *group*: the rows of `responses` for one prompt (storage.schemas), each a dict with
at least id, prompt_id, task_type, prompt, response, finish_reason, model, attributes, reward,
reference_answer, instruction_ids and instruction_kwargs. It returns
- `Pair`: it decided; chosen and rejected are two rows of the group, and `evidence` holds the
  typed evidence columns of `preferences` it can fill (see EVIDENCE_COLUMNS);
- `Pass`: it cannot decide this prompt (not its kind of prompt, a tie, all correct, ...): the
  next judge in the configured order is asked;
- `Drop` (tasks.llm_step): it looked and found a reason to keep no pair from this prompt at all
  (the LLM judge's verdicts disagree when swapped, or name neither response).
A response cut by max_tokens (finish_reason "length") is never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.llm_step import Drop, Row

# Columns of `preferences` a judge may fill in Pair.evidence; the stage fills the rest.
EVIDENCE_COLUMNS = ("reference_answer", "chosen_answer", "rejected_answer", "chosen_checks", "rejected_checks",
                    "llm_verdicts", "judge_model", "margin")


@dataclass
class Pair:
    judge: str
    chosen: Row
    rejected: Row
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.evidence) - set(EVIDENCE_COLUMNS)
        if unknown:
            raise ValueError(f"evidence names unknown columns {sorted(unknown)}; allowed: {', '.join(EVIDENCE_COLUMNS)}")


@dataclass
class Pass:
    judge: str
    reason: str  # e.g. not_applicable, all_correct, all_wrong, tie, margin_below_minimum


Decision = Pair | Pass | Drop


def can_be_chosen(row: Row) -> bool:
    """A truncated answer is never chosen (it may still be the rejected one)."""
    return row.get("finish_reason") != "length"


def response_text(row: Row) -> str:
    return row["response"][-1]["content"]


def by_reward(rows: list[Row]) -> list[Row]:
    """Highest reward first; a row without a reward ranks below every scored one; ties in id order.

    Every judge ranks with this one rule, so "the best" and "the hard negative" mean the same thing.
    """
    return sorted(rows, key=lambda row: (row.get("reward") is None, -(row.get("reward") or 0.0), str(row["id"])))
