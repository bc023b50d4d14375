"""One thread for all of the process's torch work (model loads, generate, scoring).

torch on Linux parallelizes with libgomp, which gives every thread that calls into torch a team
of worker threads of its own. Once the teams hold more threads than there are cores, libgomp
stops letting idle workers spin and puts them to sleep at once, so every small op of a decode
step pays a wake-up. Measured here (2 cores, 64 chats x 64 tokens on the embedded model):
10.8 s on one thread, 15 s as soon as a second thread had run torch, the first one included.
Running every torch call on this one thread keeps a single team.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_NAME = "sdg-torch"
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME)
        return _executor


def on_torch_thread() -> bool:
    return threading.current_thread().name.startswith(THREAD_NAME)


def run(fn: Callable[..., T], *args: Any) -> T:
    """Call `fn(*args)` on the torch thread and wait for it (inline when already there)."""
    if on_torch_thread():
        return fn(*args)
    return _pool().submit(fn, *args).result()


async def arun(fn: Callable[..., T], *args: Any) -> T:
    """`run` for coroutines: the event loop stays free while the torch thread works."""
    if on_torch_thread():
        return fn(*args)
    return await asyncio.wrap_future(_pool().submit(fn, *args))
