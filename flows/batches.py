"""Rows -> one staged batch -> its gate: the plain functions behind the landing task.

Nothing here imports Prefect, so the gate worker process (flows.landing.GateWorker) starts
quickly and the logic runs and tests without a flow. Each batch gets a deterministic id from
(run, stage, shard, config): a retried task or a rerun night overwrites the same objects
instead of adding rows twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from flows.run_context import RunContext
from quality.config import GateConfig
from quality.expectations import warm_up
from quality.gate import GateReport, run_gate
from storage.lake import batch_id
from storage.schemas import SCHEMAS

GATE_WORKER_NICENESS = 5


def start_gate_worker(gates: dict[str, GateConfig]) -> None:
    """Initializer of the gate worker process: lower its CPU priority, then build the GE suites.

    Gates are background work; the flow's event loop, which keeps the model's request window
    full, must not wait behind them for a core (its startup alone, GE's import, is seconds of CPU).
    """
    try:
        os.nice(GATE_WORKER_NICENESS)
    except OSError:  # not allowed here: run at the same priority
        pass
    warm_up(gates)


LINEAGE_DEFAULTS = {
    "model": None, "backend": None, "sampling": None, "template_id": None, "template_version": None, "seed": None,
}


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def stamp(rows: Sequence[dict], run: RunContext, stage: str, batch: str) -> list[dict]:
    """Fill the lineage every row carries (docs/architecture.md)."""
    common = {"run_id": run.run_id, "batch_id": batch, "stage": stage, "created_at": run.created_at}
    return [{**LINEAGE_DEFAULTS, **row, **common} for row in rows]


def only_schema(dataset: str, rows: list[dict]) -> list[dict]:
    """Keep the dataset's columns only: working fields of the tasks stay out of the lake."""
    names = SCHEMAS[dataset].names
    return [{name: row.get(name) for name in names} for row in rows]


def land_batch(run: RunContext, dataset: str, rows: Sequence[dict], stage: str, shard: str) -> GateReport:
    """Stage one batch and gate it: published (minus dropped rows) or quarantined, with its report."""
    batch = batch_id(run.run_id, stage, f"{dataset}-{shard}", run.fingerprint)
    staged = run.lake.stage_batch(dataset, run.run_date, batch, only_schema(dataset, stamp(rows, run, stage, batch)))
    run.catalog.record_batch(staged, "staged", run.run_id)
    return run_gate(run.lake, run.catalog, staged, run.config.quality.for_dataset(dataset), run.run_id, artifacts=False)

