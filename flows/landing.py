"""The landing task: rows -> batches -> staging -> gate -> published or quarantined.

The gate is CPU work (GE, MinHash, Parquet). A flow that drives model requests from its event
loop would lose them to the GIL while a gate runs, so gates run in one worker process
(`GateWorker`), one batch at a time: gates of a dataset see each other's signatures in order.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.batches import chunks, land_batch, start_gate_worker
from flows.run_context import RunContext
from quality.config import GateConfig
from quality.gate import GateReport


class GateWorker:
    """A process that stages and gates batches; it imports GE and builds the suites as it starts,
    while the flow's first model requests are in flight."""

    def __init__(self, gates: dict[str, GateConfig]) -> None:
        # spawn, not fork: the flow process has threads (engine loops, Prefect's) that fork would copy mid-state
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=start_gate_worker, initargs=(gates,))
        self._pool.submit(int)  # start the process now, not at the first batch

    async def land(self, run: RunContext, dataset: str, rows: Sequence[dict], stage: str, shard: str) -> GateReport:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, land_batch, run, dataset, list(rows), stage, shard)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)  # its exit (GE teardown) need not hold the flow


@task(name="land-and-gate", task_run_name="land-{dataset}-{shard}", retries=2, retry_delay_seconds=2,
      cache_policy=NO_CACHE)
async def land_and_gate(run: RunContext, dataset: str, rows: Sequence[dict], stage: str, shard: str,
                        batch_size: int, worker: GateWorker) -> list[dict]:
    """Land `rows` in batches of `batch_size`; each batch passes its gate (in the worker's process)
    or is quarantined."""
    outcomes = []
    for index, chunk in enumerate(chunks(rows, batch_size)):
        report = await worker.land(run, dataset, chunk, stage, f"{shard}-{index}")
        # no artifact per batch: the stage's table and the night's carry every verdict, under stable keys
        outcomes.append(report.summary())
    return outcomes
