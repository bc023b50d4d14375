"""The side of a batch task that runs on a Dask worker (flows/cluster.py sends it there).

A batch task travels as itself, its body wrapped by `on_worker`: on the worker, the wrapper makes
sure the process's engines were built from the batch's `models` (engines stay loaded in a worker
process from batch to batch, stage to stage, night to night), keeps the drops the task records
(`record_drops` hands them to `keep_for_flow`) and returns them with the task's result and where it
ran, for the flow process to write into its catalog.
"""

from __future__ import annotations

import functools
import os
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prefect.utilities.annotations import quote

from engines.registry import UsageKey, aclose_all, usage_snapshot
from engines.types import Usage

_kept: ContextVar[list[tuple[str, Any]] | None] = ContextVar("sdg_kept_drops", default=None)
_engines_lock = threading.Lock()
_engines_models: str | None = None  # the `models` this worker process's engines were built from


def keep_for_flow(step: str, drops: Any) -> bool:
    """In a batch task running on a worker: keep its drops for the flow process to record (True)."""
    kept = _kept.get()
    if kept is None:
        return False
    kept.append((step, drops))
    return True


@dataclass
class Shipped:
    """A batch task's result as it comes back from a worker: the drops it recorded, and where it ran."""

    result: Any
    drops: list[tuple[str, Any]]
    worker: str | None
    pid: int


async def fresh_engines(models: str) -> None:
    """Engines stay loaded in a worker across batches and runs; a batch of other models closes them first
    (the registry knows engines by name only). Two runs of different models on one cluster at once would
    close each other's: give them a cluster each."""
    global _engines_models
    with _engines_lock:
        stale = _engines_models is not None and _engines_models != models
        _engines_models = models
    if stale:
        await aclose_all()


async def run_on_worker(fn: Any, models: str, args: tuple, kwargs: dict) -> Shipped:
    await fresh_engines(models)
    kept: list[tuple[str, Any]] = []
    token = _kept.set(kept)
    try:
        result = await fn(*args, **kwargs)
    finally:
        _kept.reset(token)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:  # not in a Dask worker's thread
        worker = None
    return Shipped(result, kept, worker, os.getpid())


def on_worker(fn: Any, models: str) -> Any:
    """`fn` (a task's async body) wrapped to run on a worker: what it returns comes back as a Shipped."""

    @functools.wraps(fn)  # the task's own signature: Prefect binds its parameters by name
    async def wrapped(*args: Any, **kwargs: Any) -> Shipped:
        return await run_on_worker(fn, models, args, kwargs)  # by reference: the worker imports this module

    return wrapped


def process_usage() -> tuple[int, dict[UsageKey, Usage]]:
    """(pid, what every open engine of this process has used): run on each worker by Cluster.usage."""
    return os.getpid(), usage_snapshot()


class ShippedQuote(quote):
    """`quote` that survives pickling. Prefect's (a tuple subclass whose `__new__` takes the value)
    comes back wrapped once more from each trip (client -> scheduler -> worker): the task would get a
    tuple instead of its rows. Prefect on the worker takes this one for the quote it is."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return ShippedQuote, (self[0],)


def shippable(value: Any) -> Any:
    return ShippedQuote(value.unwrap()) if isinstance(value, quote) else value
