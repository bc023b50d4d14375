"""Where a stage's batch tasks run: in the flow's own process (the default), or on a Dask cluster.

`cluster` in the run config names one; without it nothing here is used:

    cluster: {address: "tcp://10.0.0.5:8786"}                # a running scheduler (`dask scheduler`)
    cluster: {local: {n_workers: 2, threads_per_worker: 1}}  # a distributed.LocalCluster the run starts
    cluster: {cuda: {CUDA_VISIBLE_DEVICES: "0,1"}}           # dask_cuda.LocalCUDACluster: a worker per GPU

Every stage hands its batch tasks to `StageRun.call` (flows/stage.py; the prompts stage's topic
tree, one request set that may read the catalog, stays in the flow's process). With a cluster, `Cluster.run`
submits the batch's Prefect task through prefect-dask's `DaskTaskRunner` (the task run shows in the
flow run as usual) and awaits it without blocking the flow's loop. The same flow code serves both.

What runs where:
- the flow process: the stage's plan, its landings and gates, every catalog write, the cost record.
  The drops a batch records on a worker (`record_drops`) travel back with its result and are written
  here: the DuckDB catalog takes one writing process per file, and a worker may be another machine.
- a worker process: the batch task, and the engines it asks the registry for by name. A worker builds
  an engine on first use and keeps it for the life of the process: the later batches, stages and
  nights it serves reuse it (one model load per worker process). It closes them and builds anew only
  when a batch comes with other `models` than the ones they were built from.

A remote cluster's scheduler and workers need this project installed (the same environment as the
flow: tasks travel by reference to their modules) and the lake's URL must mean the same place there.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engines.types import Usage

if TYPE_CHECKING:
    from flows.on_worker import Shipped

UsageKey = tuple[str, str]  # (model name, backend), as engines.registry counts usage
logger = logging.getLogger(__name__)

ADDRESS_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
ALLOWED = ("allowed: `address` of a running scheduler (tcp://host:8786, as `dask scheduler` prints it), "
           "`local` (a distributed.LocalCluster the run starts) or `cuda` (a dask_cuda.LocalCUDACluster, one worker per GPU)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Started(Strict):
    """A cluster the run starts on this machine and stops at the end of the outermost scope."""

    threads_per_worker: int = Field(1, ge=1, description="batches one worker process runs at once (they share its engines)")
    memory_limit: str | int = Field(
        0, description="per worker process, e.g. '16GiB'; 0: no limit (a worker killed for memory reloads its model)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="more keyword arguments of the cluster class (dashboard_address, rmm_pool_size, ...)")

    def cluster_kwargs(self) -> dict[str, Any]:
        return {"threads_per_worker": self.threads_per_worker, "memory_limit": self.memory_limit, **self.options}


class LocalClusterSpec(_Started):
    cluster_class: str = Field("distributed.LocalCluster", description="import path of the cluster class")
    n_workers: int = Field(2, ge=1, description="worker processes (each loads the engines it uses once)")
    processes: bool = Field(True, description="false: worker threads in the flow process")

    def cluster_kwargs(self) -> dict[str, Any]:
        return {"n_workers": self.n_workers, "processes": self.processes, **super().cluster_kwargs()}


class CudaClusterSpec(_Started):
    """dask-cuda's LocalCUDACluster: one worker process per GPU, its GPU that process's default device
    (cuda:0), so each loads its own copy of a local model (transformers, vllm). dask-cuda is not a
    dependency of this project: install it on the GPU nodes (`pip install dask-cuda`)."""

    cluster_class: str = Field("dask_cuda.LocalCUDACluster", description="import path of the cluster class")
    n_workers: int | None = Field(None, ge=1, description="default: one per visible GPU")
    CUDA_VISIBLE_DEVICES: str | list[int] | None = Field(None, description="the GPUs to use, e.g. '0,1'; default: all")

    def cluster_kwargs(self) -> dict[str, Any]:
        given = {"n_workers": self.n_workers, "CUDA_VISIBLE_DEVICES": self.CUDA_VISIBLE_DEVICES}
        return {**{k: v for k, v in given.items() if v is not None}, **super().cluster_kwargs()}


class ClusterConfig(Strict):
    """Where the stages' batch tasks run (flows/cluster.py); exactly one of address, local, cuda."""

    address: str | None = Field(None, description="a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    local: LocalClusterSpec | None = None
    cuda: CudaClusterSpec | None = None
    connect_timeout_s: float = Field(10.0, gt=0, le=600, description="to reach the scheduler and see a worker")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, _, rest = value.partition("://") if "://" in value else ("tcp", "", value)
        host, _, port = rest.rpartition(":")
        if scheme not in ADDRESS_SCHEMES or not host or "/" in rest or not port.isdigit():
            raise ValueError(f"{value!r} is not a Dask scheduler address; allowed: "
                             f"<scheme>://<host>:<port> with scheme {', '.join(ADDRESS_SCHEMES)} (tcp://10.0.0.5:8786)")
        return value if "://" in value else f"tcp://{value}"

    @model_validator(mode="after")
    def _exactly_one(self) -> ClusterConfig:
        named = [f for f in ("address", "local", "cuda") if getattr(self, f) is not None]
        if len(named) != 1:
            got = " and ".join(named) if named else "none of them"
            raise ValueError(f"set exactly one of address, local, cuda (got {got}); {ALLOWED}")
        return self

    @property
    def field(self) -> str:
        """The config field that names the cluster, for errors."""
        return "cluster.address" if self.address else "cluster.local" if self.local else "cluster.cuda"


class ClusterError(RuntimeError):
    """The run config's cluster cannot be used: raised before the stage does any work."""


def models_key(models: Mapping[str, Any]) -> str:
    """What a worker's engines are built from: a batch of other models makes it close them first."""
    return json.dumps({name: spec.model_dump(mode="json") for name, spec in models.items()}, sort_keys=True)


def _check_reachable(address: str, timeout_s: float) -> None:
    scheme, _, rest = address.partition("://")
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return  # ucx: the Dask client's own connect says
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"cluster.address: no Dask scheduler answers at {address} ({exc.strerror or exc}); "
                           f"{ALLOWED}") from None


def _import_class(field: str, name: str) -> Any:
    from prefect.utilities.importtools import from_qualified_name

    try:
        return from_qualified_name(name)
    except (ImportError, AttributeError, ValueError) as exc:
        hint = " (install dask-cuda on the GPU node: pip install dask-cuda)" if name.startswith("dask_cuda") else ""
        raise ClusterError(f"{field}.cluster_class: cannot import {name!r}: {exc}{hint}; {ALLOWED}") from None


class Cluster:
    """A started DaskTaskRunner: its client, the pids of its worker processes, where each batch ran."""

    def __init__(self, config: ClusterConfig, runner: Any) -> None:
        self.config, self.runner = config, runner
        self.worker_pids: dict[str, int] = {}
        self.ran_on: list[tuple[str, str | None, int]] = []  # (task run name, worker address, pid) per batch

    @classmethod
    async def start(cls, config: ClusterConfig) -> Cluster:
        """Connect to the scheduler, or start the cluster; fails (ClusterError, naming the field) when the
        scheduler cannot be reached, the cluster class cannot be imported or started, or no worker comes."""
        import dask
        from prefect_dask import DaskTaskRunner

        field = config.field
        spec = config.local or config.cuda
        if config.address:
            await asyncio.to_thread(_check_reachable, config.address, config.connect_timeout_s)
            runner = DaskTaskRunner(address=config.address, client_kwargs={"timeout": config.connect_timeout_s})
        else:
            cluster_class = _import_class(field, spec.cluster_class)
            # worker processes may start processes of their own (vLLM's engine core): not daemonic
            dask.config.set({"distributed.worker.daemon": False})
            runner = DaskTaskRunner(cluster_class=cluster_class, cluster_kwargs=spec.cluster_kwargs())
        cluster = cls(config, runner)
        try:
            await asyncio.to_thread(cluster._open)
        except ClusterError:
            raise
        except Exception as exc:
            where = f"the scheduler at {config.address}" if config.address else spec.cluster_class
            raise ClusterError(f"{field}: {where} cannot be used: {type(exc).__name__}: {exc}; {ALLOWED}") from None
        return cluster

    def _open(self) -> None:
        self.runner.__enter__()
        try:
            client = self.runner.client  # connects, or starts the cluster
            try:
                client.wait_for_workers(1, timeout=self.config.connect_timeout_s)
            except TimeoutError:
                raise ClusterError(f"{self.config.field}: no Dask worker joined within {self.config.connect_timeout_s:g}s "
                                   f"(connect_timeout_s); start workers (`dask worker <scheduler address>`)") from None
            self.worker_pids = client.run(os.getpid)
        except BaseException:
            self.runner.__exit__(None, None, None)
            raise

    async def close(self) -> None:
        await asyncio.to_thread(self.runner.__exit__, None, None, None)

    async def run(self, batch_task: Any, args: Sequence[Any], models: Mapping[str, Any]) -> Shipped:
        """Run one batch task on a worker and await it (the flow's loop stays free); its exception is raised here."""
        from prefect.utilities.callables import get_call_parameters

        from flows.on_worker import on_worker, shippable

        remote = copy.copy(batch_task)  # the same task (name, run name, retries), its body wrapped for the worker
        remote.fn = on_worker(batch_task.fn, models_key(models))
        parameters = get_call_parameters(remote.fn, tuple(shippable(a) for a in args), {})
        future = await asyncio.to_thread(self.runner.submit, remote, parameters)
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finished(_: Any) -> None:  # in a thread of the Dask client
            try:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
            except RuntimeError:  # the flow's loop is gone: nobody waits for this batch any more
                pass

        future.wrapped_future.add_done_callback(finished)
        try:
            await done  # no thread waits while the batch runs
        except asyncio.CancelledError:
            future.wrapped_future.cancel()
            raise
        shipped: Shipped = await asyncio.to_thread(future.result)
        shard = parameters.get("shard")
        self.ran_on.append((f"{batch_task.name}-{shard}" if isinstance(shard, str) else batch_task.name,
                            shipped.worker, shipped.pid))
        return shipped

    async def usage(self) -> dict[str, dict[UsageKey, Usage]]:
        """What the engines of each worker process have used so far (the flow's own process left out)."""
        from flows.on_worker import process_usage

        per_worker = await asyncio.to_thread(self.runner.client.run, process_usage)
        return {w: used for w, (pid, used) in per_worker.items() if pid != os.getpid()}

    async def meter(self) -> WorkerUsage:
        """A meter of what the workers' engines use from now on (a stage's cost there)."""
        try:
            before = await self.usage()
        except Exception as exc:
            logger.warning("cannot read the usage of the Dask workers (%s: %s); the cost record may be long",
                           type(exc).__name__, exc)
            before = {}
        return WorkerUsage(self, before)


class WorkerUsage:
    """What a stage's batches cost on the workers: their engines count there, the stage's cost record is here."""

    def __init__(self, cluster: Cluster, before: dict[str, dict[UsageKey, Usage]]) -> None:
        self.cluster, self.before = cluster, before
        self.spent: dict[UsageKey, Usage] = {}

    @property
    def completion_tokens(self) -> int:
        return sum(u.completion_tokens for u in self.spent.values())

    async def refresh(self) -> dict[UsageKey, Usage]:
        """Ask the workers again; a worker that cannot answer leaves the last numbers (a warning, not a failure)."""
        try:
            now = await self.cluster.usage()
        except Exception as exc:
            logger.warning("cannot read the usage of the Dask workers (%s: %s); the cost record may be short",
                           type(exc).__name__, exc)
            return self.spent
        spent: dict[UsageKey, Usage] = {}
        for worker, used in now.items():
            for key, total in used.items():
                then = self.before.get(worker, {}).get(key, Usage())
                if total.requests < then.requests:  # the worker built the engine anew (other models)
                    then = Usage()
                delta = Usage(total.requests - then.requests, total.prompt_tokens - then.prompt_tokens,
                              total.completion_tokens - then.completion_tokens, total.errors - then.errors,
                              total.seconds - then.seconds)
                if delta.requests or delta.errors or delta.prompt_tokens or delta.completion_tokens:
                    spent.setdefault(key, Usage()).add(delta)
        self.spent = spent
        return spent


def add_usage(into: dict[UsageKey, Usage], more: Mapping[UsageKey, Usage]) -> dict[UsageKey, Usage]:
    for key, used in more.items():
        into.setdefault(key, Usage()).add(used)
    return into


_scopes_lock = threading.Lock()
_scopes: dict[str, list[Any]] = {}  # config -> [Cluster, open scopes]


@asynccontextmanager
async def cluster_scope(config: ClusterConfig | None) -> AsyncIterator[Cluster | None]:
    """The cluster of `config` (None: none, the default runner), started or connected to by the outermost
    scope and shared by the scopes inside it, as engine_scope shares engines: a nightly run that opens one
    around its stages starts a local cluster once, and its workers keep their engines from stage to stage.
    A cluster that cannot be used fails here (ClusterError), before any work."""
    if config is None:
        yield None
        return
    key = config.model_dump_json()
    with _scopes_lock:
        entry = _scopes.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        started = await Cluster.start(config)
        with _scopes_lock:
            entry = _scopes.setdefault(key, [started, 0])
            entry[1] += 1
        if entry[0] is not started:  # another scope started the same cluster meanwhile
            await started.close()
    try:
        yield entry[0]
    finally:
        with _scopes_lock:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _scopes[key]
        if last:
            await entry[0].close()
