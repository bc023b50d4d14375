"""Prefect wrapper of the gate: retries and names only; the logic is quality.gate.run_gate."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from quality.config import GateConfig, QualityConfig
from quality.gate import GateReport, run_gate
from storage.lake import Lake, StagedBatch


@task(name="quality-gate", task_run_name="gate {staged.dataset} {staged.batch_id}", retries=2, retry_delay_seconds=5,
      cache_policy=NO_CACHE)  # lake and catalog are live handles, not cacheable inputs
def gate_batch(lake: Lake, catalog: Any, staged: StagedBatch, config: GateConfig | QualityConfig, run_id: str) -> GateReport:
    return run_gate(lake, catalog, staged, config, run_id)
