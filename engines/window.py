"""An adaptive window of requests in flight, judged round by round.

The window is a limit on concurrent requests, not a batch: a request starts as soon as another
finishes and the window has room (a rolling window). Its size moves by rounds: a round is a
window's worth of attempts (at least MIN_ROUND) started since the last cut, judged once it is
complete (or, for refusals, as soon as its verdict is certain):

- refused: at least REFUSED_SHARE of its attempts met a load fault (429, 503, 504, a timeout).
  Faults that say nothing about load (resets, truncated bodies, a 500 or 502) are only retried:
  a server that drops a connection now and then is not asking for fewer requests;
- queueing: most of its answers were slow (and of the round before too, past slow start):
  LOW_FACTOR over the baseline and grown with the number in flight since a recent clean round at
  fewer in flight (a delay gradient, as TCP Vegas reads it: latency growing as in-flight grows
  means requests wait in a queue), or HIGH_FACTOR over the baseline whatever the number in flight;
- otherwise clean: its level (the median number in flight when its fast answers started) is good.

A congested round cuts once, to the last good level (QUEUE_BACKOFF below it for a queue, so the
queue drains). With no good level below the window, a queue takes QUEUE_DECREASE of it (a server
a little past its capacity need not be half idled) and a refusal takes `decrease`. A burst of 64
refusals so costs one cut, and the window settles just under a server's capacity instead of
sawing between half of it and all of it. The first size not known good becomes a ceiling that
growth approaches slowly (a slot per PROBE_ROUNDS rounds); a clean round at it lifts it, and
growth stays additive (slow start does not come back once a congestion ended it). A halving for
latency must pay off: when the next round is no faster, the slowness was not ours (other
clients, longer prompts), so the cut is undone and the baselines start afresh.

A queue a request or two deep hides from the median: a third of a round waits, the rest is
fast. Little's law sees it: a round serves its level over its mean relative latency (clipped at
twice HIGH_FACTOR). A round that serves less than the best promise of a lower level (that
level's median, grown as a batching server grows, less THROUGHPUT_KEPT for noise) steps back to
that level, with no cut, once SLOW_ROUNDS rounds in a row fall short (one short round on a fast
server can be the client's own noise). Answers started before a step back judge nothing: a round
of them would read the old level as clean and let the window climb back. The best promise, not
the latest: a window creeping up a slot at a time would otherwise compare each level with the
one just below and climb into the queue.

Growth: slow start from SLOW_START_SIZE (+1 per fast answer, at most SLOW_START_GROWTH past the
last clean round, left at the first congestion), then +1 per round; only while requests wait for
room, and only on answers that had a baseline to be judged by (one with nothing to compare with
says nothing about a bigger window). A client whose own CPU is saturated also answers later as
it sends more, so leaving slow start costs a step back to the last good level, not half the
window.

Latency baselines are kept per answer length (completion tokens, by powers of two): a server
answering a 1-token verdict and a 40-token reply in the same 100 ms must not read as slower when
the mix turns to verdicts. Latency is measured on the client, so it also holds the time the event
loop could not run (the GIL held by another thread, a burst of parsing). A heartbeat measures how
late the loop runs, and an answer is judged with LAG_ALLOWANCE times that lag taken off: what a
busy client could explain is not read as a saturated server.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

HISTORY_KEPT = 4096  # sizes remembered for tests and reports; older changes fall off

MIN_ROUND = 16  # attempts a round needs at least: fewer say too little about a median or a share
REFUSED_SHARE = 1 / 3  # 20% random faults (13% of them 429/503/timeouts) must not read as load
LOW_FACTOR = 1.5  # an answer this much slower than its baseline is queueing if in-flight grew too
HIGH_FACTOR = 3.0  # ... and this much slower, whatever the number in flight
GRADIENT = 0.5  # latency grew at least as the square root of in-flight (a batching server: less)
QUEUE_BACKOFF = 0.9  # a queueing round steps back below the last good level by this much
QUEUE_DECREASE = 0.75  # ... and, with no good level below the window, takes this share of it
PAYOFF = 0.8  # after a latency halving, a round not faster than this share of the slow one: undone
PROBE_ROUNDS = 8  # near the ceiling, growth takes this many rounds per slot
BASELINE_ROUNDS = 32  # clean rounds a baseline is the lowest median of
RECENT_ROUNDS = 32  # clean rounds a delay gradient looks back over
SLOW_START_SIZE = 8
SLOW_START_GROWTH = 1.25  # a server that queues pays for each request sent past its capacity
SLOW_ROUNDS = 2  # past slow start, this many slow rounds in a row are a queue (one in slow start)
THROUGHPUT_KEPT = 0.9  # ... if answers per second fell below this share of a clean round's
TICK_S = 0.01  # heartbeat period of the lag meter
LAG_ALPHA = 0.3
# An answer passes through the loop several times, each time about as late as the loop runs: on a
# loaded 2-core client, 20-30 ms of lag came with answers 90 ms later than the server sent them.
LAG_ALLOWANCE = 4.0
LAG_ALLOWANCE_CAP = 1.0  # ... and at most one baseline: a lag spike does not hide a queue
TYPICAL_ALPHA = 0.1

Outcome = Literal["ok", "load", "fault", "cancelled"]


@dataclass(frozen=True)
class Slot:
    """One attempt's place in the window; hand it back to `release`."""

    generation: int  # the window's generation when it started: older ones judge nothing
    level: int  # requests in flight once it started, itself included
    started: float


@dataclass
class WindowStats:
    min_size: int
    max_size: int
    cuts: int
    history: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_KEPT))  # size after each change
    cut_reasons: Counter[str] = field(default_factory=Counter)  # "refused" | "queueing"
    undone: int = 0  # latency halvings that did not pay off
    steps_back: int = 0  # rounds that served no more than fewer in flight did


@dataclass
class _Round:
    length: int
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    refused: int = 0
    slow: int = 0
    relative: list[float] = field(default_factory=list)  # each answer's latency / its baseline, lag taken off
    measured: list[float] = field(default_factory=list)  # ... as measured (what later rounds compare with)
    levels: list[int] = field(default_factory=list)  # in flight when each fast answer started
    seconds: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # by length bucket


class AdaptiveWindow:
    def __init__(self, max_size: int, start_size: int | None = None, decrease: float = 0.5) -> None:
        self.max_size = max_size
        self.decrease = decrease
        self._size = float(start_size or min(max_size, SLOW_START_SIZE))
        self.in_flight = 0
        self.generation = 0  # bumped by each cut and step back
        self.typical_s: float | None = None  # a running average of answer latency, in seconds
        self.lag_s = 0.0  # how late the loop runs now (a running average of the heartbeat's delays)
        self._slow_start = True
        self._slow_rounds = 0  # slow rounds in a row
        self._short_rounds = 0  # rounds in a row that served less than fewer in flight promised
        self._validated = self.size  # the level of the last clean round: slow start grows from it
        self._ceiling: int | None = None
        self._last_good: int | None = None  # the level of the last clean round since the last cut
        self._baselines: dict[int, deque[float]] = {}  # length bucket -> clean rounds' median seconds
        self._clean: deque[tuple[int, float, float, float]] = deque(maxlen=BASELINE_ROUNDS)  # (level, median, rate, served)
        self._verify: tuple[float, float] | None = None  # (size before, median relative) of a halving
        self._round = self._new_round()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tick: asyncio.TimerHandle | None = None
        self.stats = WindowStats(min_size=self.size, max_size=self.size, cuts=0)
        self.stats.history.append(self.size)

    @property
    def size(self) -> int:
        return max(1, min(self.max_size, int(self._size)))

    async def acquire(self) -> Slot:
        """Wait for room; returns the attempt's slot (give it to release)."""
        self._watch_lag()
        if self.in_flight >= self.size or self._waiters:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # release() counted us in before waking us
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._release_slot()  # woken and cancelled at once: hand the slot on
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        else:
            self.in_flight += 1
        return Slot(self.generation, self.in_flight, time.monotonic())

    def fail_waiters(self, error: Callable[[], BaseException]) -> None:
        """Wake every request waiting for room with an `error()` of its own (the circuit breaker opened)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error())

    def release(self, slot: Slot, outcome: Outcome, tokens: int = 0) -> None:
        """Give the slot back with how the attempt ended; `tokens`: the answer's completion tokens."""
        seconds = time.monotonic() - slot.started
        if outcome == "ok":
            self.typical_s = seconds if self.typical_s is None else self.typical_s + TYPICAL_ALPHA * (
                seconds - self.typical_s)
        if slot.generation == self.generation and outcome != "cancelled":
            self._observe(slot, outcome, seconds, tokens)
        self._release_slot()

    # -- rounds ---------------------------------------------------------------------------

    def _observe(self, slot: Slot, outcome: Outcome, seconds: float, tokens: int) -> None:
        r = self._round
        r.attempts += 1
        if outcome == "load":
            r.refused += 1
        elif outcome == "ok":
            bucket = max(0, tokens).bit_length()
            r.seconds[bucket].append(seconds)
            baseline = self._baseline(bucket)
            relative = None  # not judged: no answer of this length yet to compare with
            if baseline:
                allowance = min(LAG_ALLOWANCE * self.lag_s, LAG_ALLOWANCE_CAP * baseline)
                relative = (seconds - allowance) / baseline
                r.relative.append(relative)
                r.measured.append(seconds / baseline)
            if relative is not None and self._reads_slow(relative, slot.level):
                r.slow += 1
            else:
                r.levels.append(slot.level)
                if relative is not None:
                    self._grow()  # an answer with nothing to compare with says nothing about more
        if r.refused >= math.ceil(REFUSED_SHARE * r.length):
            self._cut("refused")
        elif r.attempts >= r.length:
            self._judge(r)

    def _judge(self, r: _Round) -> None:
        """A complete round: queueing (cut), not faster after a latency halving (undo), or clean."""
        level = int(statistics.median(r.levels)) if r.levels else self.size
        median = statistics.median(r.relative) if r.relative else None
        verify, self._verify = self._verify, None
        if median is not None and verify is not None and median > PAYOFF * verify[1]:
            self._undo(verify[0])  # no faster with half as many in flight: the slowness is not ours
            return
        if median is not None and r.slow > len(r.relative) / 2 and self._throughput_fell(r):
            self._slow_rounds += 1
            if self._slow_start or self._slow_rounds >= SLOW_ROUNDS:
                self._cut("queueing", median)
            else:
                self._round = self._new_round()  # a queue lasts; a stall of the whole machine passes
            return
        self._slow_rounds = 0
        served = self._served(r, level)
        deserved = self._deserved(level)
        if served is not None and deserved is not None and served < deserved[0]:
            self._short_rounds += 1
            if self._short_rounds >= SLOW_ROUNDS:
                self._step_back(deserved[1])  # more in flight, little more served: the extra ones only wait
            else:
                self._round = self._new_round()  # a queue lasts; one short round can be noise
            return
        self._short_rounds = 0
        for bucket, seconds in r.seconds.items():
            self._baselines.setdefault(bucket, deque(maxlen=BASELINE_ROUNDS)).append(statistics.median(seconds))
        if median is not None:
            self._clean.append((level, statistics.median(r.measured), self._throughput(r), served))
        self._last_good = self._validated = level
        if self._ceiling is not None and level >= self._ceiling:
            self._ceiling = None  # a clean round at the old ceiling: growth need not probe any more
        self._round = self._new_round()

    @staticmethod
    def _served(r: _Round, level: int) -> float | None:
        """Answers served per baseline latency, by Little's law: the level over the mean relative
        latency (a batching server serves more as the level grows, a queue no more)."""
        if not r.relative:
            return None
        return level / statistics.mean(min(rel, 2 * HIGH_FACTOR) for rel in r.relative)

    def _deserved(self, level: int) -> tuple[float, int] | None:
        """What a round at `level` should serve at least, and the level below that promised it:
        the most that recent clean rounds at any one level below promise (their median, so one
        lucky round does not hold the window down), grown as a batching server grows (the square
        root of the level), less the noise. The most, not the latest: a window creeping up a slot
        at a time would otherwise compare each level with the one just below and climb into the
        queue."""
        served_at: dict[int, list[float]] = defaultdict(list)
        for below, _, _, served in list(self._clean)[-RECENT_ROUNDS:]:
            if below < level:
                served_at[below].append(served)
        return max(((THROUGHPUT_KEPT * statistics.median(served) * (level / below) ** GRADIENT, below)
                    for below, served in served_at.items()), default=None)

    def _step_back(self, level: int) -> None:
        """Rounds that served no more than fewer in flight did: back to that level, no cut (the
        queue they saw is a request or two deep; a cut is for a queue that lasts). Its rounds at
        `level` stay fresh, so the level keeps its promise for the next climb."""
        self._size = max(1.0, min(self._size, float(level)))
        self._slow_start = False
        self._short_rounds = 0
        self.generation += 1  # answers started above `level` judge nothing: they would pass it as clean
        self.stats.steps_back += 1
        self._record()
        self._round = self._new_round()

    def _baseline(self, bucket: int) -> float | None:
        lows = self._baselines.get(bucket)
        return min(lows) if lows else None

    def _reads_slow(self, relative: float, level: int) -> bool:
        if relative <= LOW_FACTOR:
            return False
        if relative > HIGH_FACTOR:
            return True
        below = self._below(level)  # did latency grow with in-flight?
        return below is not None and relative >= below[1] * (level / below[0]) ** GRADIENT

    def _below(self, level: int) -> tuple[int, float, float, float] | None:
        """The latest of the recent clean rounds at fewer in flight: a window held steady has none,
        and noise then cannot pass for a queue."""
        recent = list(self._clean)[-RECENT_ROUNDS:]
        return next((round_ for round_ in reversed(recent) if round_[0] < level), None)

    def _throughput_fell(self, r: _Round) -> bool:
        """Slow answers are a saturated server only if it also answers fewer per second. A client
        whose own CPU is saturated answers later as it sends more, but no fewer per second."""
        level = int(statistics.median(r.levels)) if r.levels else self.size
        reference = self._below(level + 1) or (self._clean[-1] if self._clean else None)
        return reference is None or self._throughput(r) < THROUGHPUT_KEPT * reference[2]

    @staticmethod
    def _throughput(r: _Round) -> float:
        return r.attempts / max(time.monotonic() - r.started, 1e-6)

    def _cut(self, reason: str, median: float | None = None) -> None:
        before = self._size
        good = self._last_good
        # Back to the last good level (a tenth below it for a queue, so the queue drains), and
        # growth slows down past it; when the window is not above that level, by `decrease`.
        if good is not None and good < self.size:
            self._size = max(1.0, float(min(good - 1, QUEUE_BACKOFF * good) if reason == "queueing" else good))
            self._ceiling = good + 1
            self._verify = None  # a step back to good may not drain a deep queue: not put to the test
        else:
            # A queue drains with a smaller step than a refusal asks for: halving it would idle
            # half of a server that is only a little past its capacity.
            factor = max(self.decrease, QUEUE_DECREASE) if reason == "queueing" else self.decrease
            self._size = max(1.0, self._size * factor)
            self._ceiling = max(self.size + 1, int(before))
            self._verify = (before, median) if median is not None else None
        self._last_good = None  # another congestion from here is below any known good level
        self._slow_start = False
        self._slow_rounds = 0
        self.generation += 1
        self._round = self._new_round()
        self.stats.cuts += 1
        self.stats.cut_reasons[reason] += 1
        self._record()

    def _undo(self, before: float) -> None:
        self._size = max(self._size, before)
        self._ceiling = None
        self._baselines.clear()  # the new normal is the baseline from here
        self._clean.clear()
        self.stats.undone += 1
        self._round = self._new_round()
        self._record()

    def _new_round(self) -> _Round:
        return _Round(max(MIN_ROUND, self.size))

    def _grow(self) -> None:
        if self.in_flight < self.size and not self._waiters:
            return  # the window was not the limit: this answer says nothing about a bigger one
        if self._slow_start:
            cap = max(SLOW_START_GROWTH * self._validated, self._validated + 1.0)
            step = 1.0 if self._size < cap else 0.0
        else:
            step = 1.0 / self._size
        if self._ceiling is not None and self.size + 1 >= self._ceiling:
            step /= PROBE_ROUNDS  # probe the size that was congested only now and then
        before = self.size
        self._size = min(float(self.max_size), self._size + step)
        if self.size == self.max_size:
            self._slow_start = False  # nothing left to grow into
        if self.size != before:
            self._record()

    # -- slots and the lag meter ----------------------------------------------------------

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

    def _watch_lag(self) -> None:
        if self._tick is None:
            loop = asyncio.get_running_loop()
            self._tick = loop.call_later(TICK_S, self._on_tick, loop, loop.time() + TICK_S)

    def _on_tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self.lag_s += LAG_ALPHA * (max(0.0, now - due) - self.lag_s)
        if self.in_flight or self._waiters:
            self._tick = loop.call_later(TICK_S, self._on_tick, loop, now + TICK_S)
        else:
            self._tick = None
