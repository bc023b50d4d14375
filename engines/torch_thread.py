"""One thread for all of the process's torch work (model loads, generate, scoring).

torch on Linux parallelizes with libgomp, which gives every thread that calls into torch a team
of worker threads of its own. Once the teams hold more threads than there are cores, libgomp
stops letting idle workers spin and puts them to sleep at once, so every small op of a decode
step pays a wake-up. Measured here (2 cores, 64 chats x 64 tokens on the embedded model):
10.8 s on one thread, 15 s as soon as a second thread had run torch, the first one included.
Running every torch call on this one thread keeps a single team. A model pinned to a GPU of its
own ("cuda:1") gets a thread of its own, so two GPUs are not served in turn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_NAME = "sdg-torch"
DEFAULT_LANE = "default"
_executors: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def lane_for(device: str) -> str:
    """The thread a model on `device` uses: its own for an explicit GPU ("cuda:1"), so models on
    different GPUs still run side by side; one shared thread for everything else."""
    return device if device.startswith("cuda:") else DEFAULT_LANE


def _pool(lane: str) -> ThreadPoolExecutor:
    with _lock:
        if lane not in _executors:
            _executors[lane] = ThreadPoolExecutor(1, thread_name_prefix=f"{THREAD_NAME}[{lane}]")
        return _executors[lane]


def on_lane(lane: str) -> bool:
    return threading.current_thread().name.startswith(f"{THREAD_NAME}[{lane}]")


def run(fn: Callable[..., T], *args: Any, lane: str = DEFAULT_LANE) -> T:
    """Call `fn(*args)` on the lane's thread and wait for it (inline when already there)."""
    if on_lane(lane):
        return fn(*args)
    return _pool(lane).submit(fn, *args).result()


async def arun(fn: Callable[..., T], *args: Any, lane: str = DEFAULT_LANE) -> T:
    """`run` for coroutines: the event loop stays free while the lane's thread works."""
    if on_lane(lane):
        return fn(*args)
    return await asyncio.wrap_future(_pool(lane).submit(fn, *args))
