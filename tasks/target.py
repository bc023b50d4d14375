"""Exactly N: a stage's target is a number of accepted (published) rows, not of attempts.

The stage starts batches while the target is not reached and no budget has run out (batches,
completion tokens, wall time). Rows generated but not yet through their gate count as pending:
while published + pending rows would reach the target, a new batch waits for the gates instead
of generating rows that may not be needed, and starts if the gates dropped enough. Landings go
through the gate one at a time, and each lands at most what is still missing: rows past the
target are recorded drops (`past_target`), never published. The summary says what ended the stage.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, ConfigDict, Field


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int | None = Field(None, ge=1, description="published rows to reach; null: every selected input once")
    max_batches: int | None = Field(None, ge=1, description="budget: batches of work started")
    max_tokens: int | None = Field(None, ge=1, description="budget: completion tokens of the stage's models")
    max_seconds: float | None = Field(None, gt=0, description="budget: wall time of the stage")


class TargetTracker:
    """Used from the flow's event loop only (no locks: its awaits are the only switch points)."""

    def __init__(self, target: Target, dataset: str, tokens_used) -> None:
        """`dataset`: whose published rows count; `tokens_used()`: completion tokens the stage has spent so far."""
        self.target, self.dataset, self.tokens_used = target, dataset, tokens_used
        self.started = time.monotonic()
        self.published = 0
        self.pending = 0  # generated rows of the target's dataset waiting for their gate
        self.batches = 0
        self.ended_by: str | None = None
        self._changed = asyncio.Event()

    async def start_batch(self) -> bool:
        """Whether another batch of work may start (counted when it may); waits while the rows
        already generated would reach the target if their gates keep them."""
        while True:
            reason = self._exhausted()
            if reason:
                self.ended_by = self.ended_by or reason
                return False
            if self.target.rows is None or self.published + self.pending < self.target.rows:
                self.batches += 1
                return True
            self._changed.clear()
            await self._changed.wait()

    def _exhausted(self) -> str | None:
        t = self.target
        if t.rows is not None and self.published >= t.rows:
            return "target"
        if t.max_batches is not None and self.batches >= t.max_batches:
            return "max_batches"
        if t.max_tokens is not None and self.tokens_used() >= t.max_tokens:
            return "max_tokens"
        if t.max_seconds is not None and time.monotonic() - self.started >= t.max_seconds:
            return "max_seconds"
        return None

    def generated(self, dataset: str, rows: int) -> None:
        if dataset == self.dataset:
            self.pending += rows

    def room(self) -> int | None:
        """Rows the next landing may publish (None: no limit); called under the lander's one-at-a-time lock."""
        return None if self.target.rows is None else max(0, self.target.rows - self.published)

    def landed(self, outcomes: list[dict], generated: int = 0) -> None:
        """Gate verdicts of a landing of `generated` rows (0: found finished by an earlier attempt)."""
        self.published += sum(o["rows_out"] for o in outcomes if o["dataset"] == self.dataset)
        self.pending -= generated
        self._changed.set()

    def end(self) -> str:
        """What ended the stage: a target or budget, or `inputs` when every selected input was used."""
        if self.target.rows is not None and self.published >= self.target.rows:
            return "target"
        return self.ended_by or "inputs"
