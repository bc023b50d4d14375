"""The skeleton every stage flow copies: one run, its lander, its drop ledger, its engines.

A stage flow is three lines of plumbing around its own work:

    async with open_stage(config, "preferences", run_date, datasets=("responses", "preferences"),
                          batch_size=stage.batch_size) as stage_run:
        out = await make_something(quote(stage_run.run), ...)   # a @task over a batch
        stage_run.record_drops("something", out)               # generation drops -> the ledger
        await stage_run.land("preferences", out.rows, "shard")  # -> staging -> gate -> published

`open_stage` starts the run (its id, the catalog's `runs` row, the resolved config beside the
data), starts the gate worker, and at the end records what the stage's models cost, refreshes the
views and marks the run completed or failed. Engines are opened by name when a task first asks
(`run.chat_engine(name)`), shared by every stage of the process, and closed once, by the outermost
scope (a nightly run, or a stage run on its own): the second stage of a night reuses the loaded model.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.utilities.annotations import quote

from engines.registry import engine_scope, usage_snapshot, usage_since
from flows.cluster import Cluster, WorkerUsage, add_usage, cluster_scope
from flows.on_worker import keep_for_flow
from flows.config import RunConfig
from flows.landing import GateWorker, land_and_gate
from flows.progress import PROGRESS
from flows.reports import artifact_key
from flows.run_context import RunContext, start_run
from tasks.llm_step import Drop, Row, StepResult
from tasks.target import Target, TargetTracker


def record_drops(run: RunContext, step: str, drops: StepResult | Sequence[Drop]) -> None:
    """Dropped rows are data: counted per reason in the catalog's ledger, kept with their raw text in the lake."""
    result = drops if isinstance(drops, StepResult) else StepResult(drops=list(drops))
    if keep_for_flow(step, result):  # in a batch task on a Dask worker: the flow process records them
        return
    run.catalog.record_step_drops(run.run_id, run.flow, step, result.drop_counts())
    PROGRESS.dropped(run.flow, sum(d.count for d in result.drops))
    path = f"{run.lake.root}/runs/{run.run_id}/drops/{step}.jsonl"
    if not result.drops:
        if run.lake.fs.exists(path):  # a rerun that dropped nothing: the earlier drops are not this run's
            run.lake.fs.rm(path)
        return
    lines = [json.dumps({"reason": d.reason, "count": d.count, "raw": d.raw, "source": d.source}, default=str)
             for d in result.drops]
    run.lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    run.lake.fs.pipe(path, ("\n".join(lines) + "\n").encode())


class Lander:
    """Lands rows of any of the stage's datasets as soon as they exist, while generation goes on;
    the gates run one at a time in a worker process (flows.landing.GateWorker)."""

    def __init__(self, run: RunContext, datasets: Sequence[str], batch_size: int) -> None:
        self.run, self.batch_size = run, batch_size
        self.outcomes: list[dict] = []
        self._one_at_a_time = asyncio.Lock()
        self._worker = GateWorker({d: run.config.quality.for_dataset(d) for d in datasets})

    async def land(self, dataset: str, rows: list[Row], shard: str, target: TargetTracker | None = None,
                   pending: bool = False) -> list[dict]:
        """Land rows in batches of the stage's batch size; returns the gate verdict of each batch.

        With a target, at most the rows still missing are landed (after every earlier landing's
        gate): the rest are `past_target` drops. The rows count as pending toward the target from
        now on, or already do (`pending`: the caller counted them when it made them)."""
        counted = target is not None and target.dataset == dataset
        if counted and not pending:
            target.generated(dataset, len(rows))
        if not rows:
            return []
        async with self._one_at_a_time:
            room = target.room() if counted else None
            surplus = rows[room:] if room is not None else []
            if surplus:
                record_drops(self.run, f"past-target-{dataset}-{shard}",
                             [Drop("past_target", None, {"id": r.get("id")}) for r in surplus])
                rows = rows[:room]
            outcomes = await land_and_gate(quote(self.run), dataset, quote(rows), self.run.flow, shard,
                                           self.batch_size, quote(self._worker)) if rows else []
            if counted:
                target.landed(outcomes, generated=len(rows) + len(surplus))
        self.outcomes += outcomes
        PROGRESS.landed(self.run.flow, outcomes)
        return outcomes

    def close(self) -> None:
        self._worker.close()


class Markers:
    """Completion markers (as datatrove keeps them): a batch of a stage's work that has landed and
    been gated leaves `runs/<run id>/done/<shard>.pkl` in the lake, holding what the stage's report
    needs of it. A rerun of the same run (same id, same config) skips those batches and redoes the
    rest; batch ids are deterministic, so a batch cut off mid-way is overwritten, never doubled.
    A marker of another config (another fingerprint) is ignored: that run's work is not this one's."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.folder = f"{run.lake.root}/runs/{run.run_id}/done"

    def read(self, shard: str) -> tuple[Any, list[dict]] | None:
        path = f"{self.folder}/{shard}.pkl"
        if not self.run.lake.fs.exists(path):
            return None
        marker = pickle.loads(self.run.lake.fs.cat_file(path))
        if marker["fingerprint"] != self.run.fingerprint:
            return None
        return marker["result"], marker["outcomes"]

    def write(self, shard: str, result: Any, outcomes: list[dict]) -> None:
        self.run.lake.fs.makedirs(self.folder, exist_ok=True)
        marker = {"fingerprint": self.run.fingerprint, "shard": shard, "result": result, "outcomes": outcomes}
        self.run.lake.fs.pipe(f"{self.folder}/{shard}.pkl", pickle.dumps(marker))


@dataclass
class StageRun:
    run: RunContext
    lander: Lander
    markers: Markers
    resumed: int = 0  # batches found finished by an earlier attempt of this run
    planned: int = 0
    done: int = 0
    progress_id: Any = None  # the stage's progress artifact, once it has planned its batches
    _updates: set = field(default_factory=set)
    cluster: Cluster | None = None  # the run config's Dask cluster (flows/cluster.py); None: the default runner
    on_workers: WorkerUsage | None = None  # what the stage's batches cost there

    def finished(self, shard: str, target: TargetTracker | None = None) -> Any | None:
        """The result of a batch an earlier attempt of this run finished (its landings count again,
        toward the target too), or None."""
        found = self.markers.read(shard)
        if found is None:
            return None
        result, outcomes = found
        self.lander.outcomes += outcomes
        if target:
            target.landed(outcomes)
        PROGRESS.landed(self.run.flow, outcomes)
        self.batch_done()
        self.resumed += 1
        return result

    def mark_finished(self, shard: str, result: Any, outcomes: list[dict]) -> None:
        """After a batch's landings: a rerun of this run will not generate it again."""
        self.markers.write(shard, result, outcomes)
        self.batch_done()

    def record_drops(self, step: str, result: StepResult | Sequence[Drop]) -> None:
        record_drops(self.run, step, result)

    async def land(self, dataset: str, rows: list[Row], shard: str, target: TargetTracker | None = None,
                   pending: bool = False) -> list[dict]:
        return await self.lander.land(dataset, rows, shard, target, pending)

    async def call(self, batch_task: Any, *args: Any) -> Any:
        """Run one batch task of the stage and return its result: awaited on the flow's own loop (the
        default task runner) or, when the config names a `cluster`, on a Dask worker through prefect-dask's
        DaskTaskRunner, awaited without blocking this loop; the drops it recorded there are recorded here.
        The one place a stage hands batch work to a task runner."""
        if self.cluster is None:
            return await batch_task(*args)
        shipped = await self.cluster.run(batch_task, args, self.run.config.models)
        for step, drops in shipped.drops:
            record_drops(self.run, step, drops)
        if self.on_workers is not None:
            await self.on_workers.refresh()  # the target's token budget and the display count the workers' tokens too
            PROGRESS.worker_tokens(self.run.flow, self.on_workers.completion_tokens)
        return shipped.result

    def target(self, target: Target, dataset: str) -> TargetTracker:
        """A tracker of the stage's target (published rows of `dataset`) and budgets; its tokens are
        those the models spent since the stage began."""
        def tokens() -> int:
            remote = self.on_workers.completion_tokens if self.on_workers is not None else 0
            return sum(u.completion_tokens for u in usage_snapshot().values()) + remote

        before = tokens()
        return TargetTracker(target, dataset, lambda: tokens() - before)

    async def plan(self, batches: int) -> None:
        """How many batches of work the stage will do: the display shows done of planned and the time
        left, and a progress artifact on the stage's run moves as they finish. A stage that learns
        its count as it goes plans again (the artifact is made once)."""
        PROGRESS.plan(self.run.flow, batches)
        self.planned = batches
        if self.progress_id is not None:
            return
        self.progress_id = await acreate_progress_artifact(
            0.0, key=artifact_key(self.run.config.name, f"{self.run.flow}-progress"),
            description=f"Batches of {self.run.run_id} done")

    def batch_done(self) -> None:
        PROGRESS.batch_done(self.run.flow)
        self.done += 1
        if self.progress_id is not None:  # not awaited: the batch goes on while the API is told
            update = aupdate_progress_artifact(self.progress_id, min(100.0, 100.0 * self.done / self.planned))
            self._updates.add(task := asyncio.get_running_loop().create_task(update))
            task.add_done_callback(self._updates.discard)

    async def settle(self) -> None:
        """Wait for the progress updates still on their way."""
        await asyncio.gather(*self._updates, return_exceptions=True)


@asynccontextmanager
async def open_stage(config: RunConfig, stage: str, run_date: str | None, datasets: Sequence[str],
                     batch_size: int) -> AsyncIterator[StageRun]:
    async with cluster_scope(config.cluster) as cluster:  # a cluster that cannot be used fails here, before any work
        run = start_run(config, stage, run_date)
        lander = Lander(run, datasets, batch_size)  # its gate worker starts now, while the stage warms up
        before = usage_snapshot()
        PROGRESS.start(stage)
        state = "failed"
        try:
            on_workers = await cluster.meter() if cluster is not None else None
            async with engine_scope():
                try:
                    stage_run = StageRun(run, lander, Markers(run), cluster=cluster, on_workers=on_workers)
                    yield stage_run
                    await stage_run.settle()
                finally:  # what the stage's requests cost, charged to this run even when it failed
                    spent = usage_since(before)
                    if on_workers is not None:  # and what its batches cost on the cluster's workers
                        add_usage(spent, await on_workers.refresh())
                    for (model, backend), used in spent.items():
                        run.catalog.record_usage(run.run_id, model, backend, used)
            run.catalog.refresh_views()
            run.catalog.finish_run(run.run_id, "completed")
            state = "completed"
        except BaseException:
            run.catalog.finish_run(run.run_id, "failed")
            raise
        finally:
            PROGRESS.freeze_tokens(stage)
            PROGRESS.finish(stage, state)
            lander.close()
