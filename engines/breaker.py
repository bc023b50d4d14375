"""A circuit breaker over the last attempts to one server: past `max_error_rate` it stops sending.

It keeps the outcome of the last `window` attempts (the fault kind of each failed one). Once their
failure rate is past `max_error_rate` with confidence (the lower end of its Wilson interval at
z = CONFIDENCE_Z is above it: 10 failures of 10 are enough, 12 of 20 are not), the breaker opens:
no request is sent for `cooldown_s`, and every request still waiting ends with one message that
names the faults it saw. Then one request is let through as a probe (the others wait for it): an
answer closes the breaker with a clean slate, a fault opens it for another cooldown.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from typing import Literal

Admission = Literal["send", "probe", "refuse"]

# One-sided, about 1 in 700: with 20% of attempts failing at random it never opens at 0.5, nor
# for a short burst of refusals while the window finds a server's capacity.
CONFIDENCE_Z = 3.0
MIN_ATTEMPTS = 10


class CircuitBreaker:
    def __init__(self, max_error_rate: float, window: int, cooldown_s: float) -> None:
        self.max_error_rate = max_error_rate
        self.cooldown_s = cooldown_s
        self.trips = 0
        self.message: str | None = None  # why it is open; None while closed
        self._outcomes: deque[str | None] = deque(maxlen=window)  # fault kind, None for an answer
        self._opened_at: float | None = None
        self._probing = False
        self._probe_settled: asyncio.Event | None = None
        self._opened: asyncio.Event | None = None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def opened(self) -> asyncio.Event:
        """Set while open: backoff sleeps wait on it, so they end when the breaker opens."""
        if self._opened is None:
            self._opened = asyncio.Event()
        return self._opened

    async def admit(self) -> Admission:
        """May a request be sent now? "probe": yes, and its answer decides whether the breaker closes."""
        while self._opened_at is not None:
            if self._probing:
                assert self._probe_settled is not None
                await self._probe_settled.wait()
                continue
            if time.monotonic() - self._opened_at < self.cooldown_s:
                return "refuse"
            self._probing = True
            self._probe_settled = asyncio.Event()
            return "probe"
        return "send"

    def record(self, fault: str | None) -> bool:
        """An attempt's outcome (its fault kind, None for an answer); True when this one opened it."""
        if self._probing:
            self._settle_probe(fault)
            return fault is not None
        if self._opened_at is not None:
            return False  # late answers to requests sent before it opened judge nothing
        self._outcomes.append(fault)
        if len(self._outcomes) < MIN_ATTEMPTS:
            return False
        failed = [kind for kind in self._outcomes if kind is not None]
        if wilson_low(len(failed), len(self._outcomes)) <= self.max_error_rate:
            return False
        counts = ", ".join(f"{kind} x{n}" for kind, n in Counter(failed).most_common())
        self._open(f"circuit breaker open: {len(failed)} of the last {len(self._outcomes)} attempts failed, "
                   f"past max_error_rate {self.max_error_rate:g} ({counts}); "
                   f"requests are not sent for {self.cooldown_s:g}s after it opens")
        return True

    def abandon_probe(self) -> None:
        """The probe ended without an outcome (cancelled): let another request probe."""
        if self._probing:
            self._probing = False
            self._opened_at = time.monotonic() - self.cooldown_s  # the next request probes at once
            self._wake_probe_waiters()

    def _settle_probe(self, fault: str | None) -> None:
        self._probing = False
        if fault is None:
            self._opened_at = None
            self.message = None
            self._outcomes.clear()
            self.opened.clear()
        else:
            self._opened_at = time.monotonic()  # still failing: another cooldown
        self._wake_probe_waiters()

    def _wake_probe_waiters(self) -> None:
        if self._probe_settled is not None:
            self._probe_settled.set()
            self._probe_settled = None

    def _open(self, message: str) -> None:
        self.trips += 1
        self.message = message
        self._opened_at = time.monotonic()
        self.opened.set()


def wilson_low(failed: int, n: int, z: float = CONFIDENCE_Z) -> float:
    """The lower end of the Wilson score interval of a rate of `failed` in `n`."""
    rate = failed / n
    centre = rate + z * z / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)
