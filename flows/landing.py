"""Rows -> batches -> staging -> gate -> published or quarantined, one batch at a time.

Each batch gets a deterministic id from (run, stage, shard, config), so a retried task or a
rerun night overwrites the same objects instead of adding rows twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.run_context import RunContext
from quality.gate import run_gate
from storage.lake import batch_id

LINEAGE_DEFAULTS = {
    "model": None, "backend": None, "sampling": None, "template_id": None, "template_version": None, "seed": None,
}


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def stamp(rows: Sequence[dict], run: RunContext, stage: str, batch: str) -> list[dict]:
    """Fill the lineage every row carries (DESIGN.md) and drop working fields the schema lacks."""
    common = {"run_id": run.run_id, "batch_id": batch, "stage": stage, "created_at": run.created_at}
    return [{**LINEAGE_DEFAULTS, **row, **common} for row in rows]


@task(name="land-and-gate", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def land_and_gate(run: RunContext, dataset: str, rows: Sequence[dict], stage: str, shard: str) -> list[dict]:
    """Land `rows` in batches of the stage's batch size; each batch passes its gate or is quarantined."""
    size = run.config.prompts.batch_size
    outcomes = []
    for index, chunk in enumerate(chunks(rows, size)):
        batch = batch_id(run.run_id, stage, f"{dataset}-{shard}-{index}", run.fingerprint)
        staged = run.lake.stage_batch(dataset, run.run_date, batch, _only_schema(dataset, stamp(chunk, run, stage, batch)))
        run.catalog.record_batch(staged, "staged", run.run_id)
        report = run_gate(run.lake, run.catalog, staged, run.config.quality.for_dataset(dataset), run.run_id)
        outcomes.append(report_summary(report))
    return outcomes


def _only_schema(dataset: str, rows: list[dict]) -> list[dict]:
    from storage.schemas import SCHEMAS

    names = SCHEMAS[dataset].names
    return [{name: row.get(name) for name in names} for row in rows]


def report_summary(report: Any) -> dict:
    summary = report.summary() if hasattr(report, "summary") else dict(report)
    return summary
