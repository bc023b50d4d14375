"""An event loop of the engine's own, in a daemon thread, for clients bound to one loop.

An aiohttp session belongs to the loop it was opened on. Engines are built once per process
(engines/registry.py) but called from many loops: `chat_sync` opens a fresh loop per call with
`asyncio.run`, Prefect runs tasks in worker threads. So the HTTP client lives here and every
batch hops onto this loop (one hop per batch, not per request). One loop per engine also
means one adaptive window per server, whoever calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EngineLoop:
    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"engine-loop-{self.name}", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the engine's loop from any loop; cancelling the caller cancels it."""
        loop = self._started()
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def stop(self, closer: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run `closer` (closing the client) on the loop, then end the loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if asyncio.get_running_loop() is loop:
            raise RuntimeError(f"engine {self.name!r} cannot be closed from its own loop")
        if closer is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(closer), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        loop.close()


async def _call(closer: Callable[[], Awaitable[None]]) -> None:
    await closer()
