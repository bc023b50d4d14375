"""Progress of the stages running in this process, for whoever watches (the `sdg run` display).

The stage skeleton reports into `PROGRESS` as it goes: a stage starts, plans its batches (when it
knows how many), lands batches through the gate, records drops, finishes. Reading it never
blocks the stages: the display copies numbers out under a lock, a few times a second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from engines.registry import usage_snapshot


@dataclass
class StageProgress:
    stage: str
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    state: str = "running"
    batches_planned: int | None = None  # batches of work (prompts, dialogues); None while unknown
    batches_done: int = 0
    landed: int = 0  # gate batches
    published: dict[str, int] = field(default_factory=dict)  # rows per dataset
    dropped: int = 0  # generation drops and rows the gates dropped
    tokens_at_start: int = 0
    tokens: int = 0  # completion tokens since the stage started
    worker_tokens: int = 0  # ... of them, spent on Dask workers (known as each batch comes back)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def time_left(self) -> float | None:
        if not self.batches_planned or not self.batches_done or self.finished:
            return None
        return self.elapsed / self.batches_done * (self.batches_planned - self.batches_done)


def _completion_tokens() -> int:
    return sum(u.completion_tokens for u in usage_snapshot().values())


class Progress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stages: dict[str, StageProgress] = {}

    def start(self, stage: str) -> None:
        with self._lock:
            self.stages[stage] = StageProgress(stage, tokens_at_start=_completion_tokens())

    def plan(self, stage: str, batches: int) -> None:
        with self._lock:
            self.stages[stage].batches_planned = batches

    def batch_done(self, stage: str) -> None:
        with self._lock:
            self.stages[stage].batches_done += 1

    def landed(self, stage: str, outcomes: list[dict]) -> None:
        with self._lock:
            progress = self.stages[stage]
            for outcome in outcomes:
                progress.landed += 1
                progress.published[outcome["dataset"]] = progress.published.get(outcome["dataset"], 0) + outcome["rows_out"]
                progress.dropped += outcome["rows_in"] - outcome["rows_out"]

    def dropped(self, stage: str, count: int) -> None:
        with self._lock:
            if stage in self.stages:
                self.stages[stage].dropped += count

    def worker_tokens(self, stage: str, tokens: int) -> None:
        """The completion tokens the stage's batches have spent on Dask workers so far."""
        with self._lock:
            self.stages[stage].worker_tokens = tokens

    def finish(self, stage: str, state: str) -> None:
        with self._lock:
            progress = self.stages[stage]
            progress.finished, progress.state = time.monotonic(), state

    def snapshot(self) -> list[StageProgress]:
        """Copies of every stage's numbers, with the tokens spent so far."""
        tokens = _completion_tokens()
        with self._lock:
            out = []
            for p in self.stages.values():
                copy = StageProgress(**{k: getattr(p, k) for k in p.__dataclass_fields__})
                copy.published = dict(p.published)
                if copy.finished is None:
                    copy.tokens = tokens - p.tokens_at_start + p.worker_tokens
                out.append(copy)
            return out

    def freeze_tokens(self, stage: str) -> None:
        """At a stage's end: its tokens stop counting (later stages share the engines)."""
        tokens = _completion_tokens()
        with self._lock:
            progress = self.stages[stage]
            progress.tokens = tokens - progress.tokens_at_start + progress.worker_tokens


PROGRESS = Progress()
