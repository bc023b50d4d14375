"""An adaptive window of requests in flight: additive increase, multiplicative decrease.

The window is a limit on concurrent requests, not a batch: a request starts as soon as another
finishes and the window has room (a rolling window). Its size moves like TCP's congestion
window, per request rather than per packet:

- each success adds 1/size (so about +1 per window's worth of successes);
- a congestion signal (429, 5xx, a timeout, or a latency far above the running baseline)
  halves it, at most once per "generation": requests that started before the last cut carry
  the old generation and do not cut again, so a burst of 64 rejected requests halves the
  window once, not 64 times.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

HISTORY_KEPT = 4096  # sizes remembered for tests and reports; older changes fall off

# Recent latency (a fast average) this many times the baseline (near the lowest seen) is read as
# a saturated server. Averages, not single answers: one answer delayed by a busy CPU must not
# halve the window; a lasting rise must, until the baseline has caught up with it.
LATENCY_CONGESTION_FACTOR = 3.0
RECENT_ALPHA = 0.25
BASELINE_ALPHA = 0.02


@dataclass
class WindowStats:
    min_size: int
    max_size: int
    cuts: int
    history: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_KEPT))  # size after each change


class AdaptiveWindow:
    def __init__(self, max_size: int, start_size: int | None = None, decrease: float = 0.5) -> None:
        self.max_size = max_size
        self.decrease = decrease
        self._size = float(start_size or max_size)
        self.in_flight = 0
        self.generation = 0  # bumped by each cut
        self.baseline_s: float | None = None
        self.recent_s = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.stats = WindowStats(min_size=self.size, max_size=self.size, cuts=0)
        self.stats.history.append(self.size)

    @property
    def size(self) -> int:
        return max(1, min(self.max_size, int(self._size)))

    async def acquire(self) -> int:
        """Wait for room; returns the generation the request starts in (give it to release)."""
        if self.in_flight < self.size and not self._waiters:
            self.in_flight += 1
            return self.generation
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() counted us in before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # woken and cancelled at once: hand the slot on
            else:
                self._waiters.remove(waiter)
            raise
        return self.generation

    def release(self, generation: int, *, ok: bool, congested: bool = False, latency_s: float = 0.0) -> None:
        """Give the slot back with what the request says about the server's load."""
        if ok:
            if self._latency_says_congested(latency_s):
                self._cut(generation)
            else:
                self._grow()
        elif congested:
            self._cut(generation)
        self._release_slot()

    def _latency_says_congested(self, latency_s: float) -> bool:
        if self.baseline_s is None:
            self.baseline_s = self.recent_s = latency_s
            return False
        self.recent_s += RECENT_ALPHA * (latency_s - self.recent_s)
        # The baseline drops at once to a new low (the server unloaded; cold first answers
        # with connection set-up do not linger in it) and rises slowly to follow lasting change.
        rising = self.baseline_s + BASELINE_ALPHA * (latency_s - self.baseline_s)
        self.baseline_s = min(latency_s, rising)
        # Both this answer and the recent average must be slow: a lone spike is noise, and a
        # fast answer after a slow cold start is no congestion.
        limit = LATENCY_CONGESTION_FACTOR * self.baseline_s
        return latency_s > limit and self.recent_s > limit

    def _grow(self) -> None:
        before = self.size
        self._size = min(float(self.max_size), self._size + 1.0 / max(self._size, 1.0))
        if self.size != before:
            self._record()

    def _cut(self, generation: int) -> None:
        if generation != self.generation:
            return  # started before the last cut: that cut already answered this congestion
        self.generation += 1
        self._size = max(1.0, self._size * self.decrease)
        self.stats.cuts += 1
        self._record()

    def _record(self) -> None:
        size = self.size
        self.stats.history.append(size)
        self.stats.min_size = min(self.stats.min_size, size)
        self.stats.max_size = max(self.stats.max_size, size)

    def _release_slot(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < self.size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
