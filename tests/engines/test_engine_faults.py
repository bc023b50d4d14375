"""The openai engine under random faults, saturated servers and a fault storm, on loopback.

The server is benchmarks/servers/fault_openai.py as a subprocess (its CPU is not the client's),
with faults drawn per attempt; the sizes are small so CI runs them in seconds. Assertions are on
counts and window sizes, with wide margins; times only as generous bounds.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from pydantic import ValidationError

from benchmarks.engine_faults import MIX_20, MIX_5, MIX_STORM
from benchmarks.servers.fault_openai import spawn_fault_server
from engines.config import ModelSpec
from engines.openai_chat import OpenAIChatEngine
from engines.openai_http import EngineUnavailable
from engines.types import ChatRequest
from engines.window import AdaptiveWindow
from tests.engines.fault_server import FaultServer

pytestmark = pytest.mark.timeout(120)

DEADLINE_S = 1.0
NON_LOAD = {"reset_before": 0.04, "reset_mid": 0.04, "truncated": 0.04, "500": 0.04, "html": 0.04}


@pytest.fixture
def spawn():
    procs = []

    def start(latency_s: float = 0.05, **server) -> str:
        proc, base_url = spawn_fault_server(latency_s, slow_s=DEADLINE_S + 0.5, **server)
        procs.append(proc)
        return base_url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def engine_for(base_url: str, concurrency: int = 16, **spec_fields) -> OpenAIChatEngine:
    spec = ModelSpec(backend="openai", base_url=base_url, model="fake", concurrency=concurrency,
                     timeout_s=spec_fields.pop("timeout_s", DEADLINE_S), **spec_fields)
    return OpenAIChatEngine("fake-model", spec)


def asks(tag: str, count: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"{tag} {i}"}], max_tokens=8) for i in range(count)]


async def chat_sampling(engine: OpenAIChatEngine, requests: list[ChatRequest], bound_s: float = 60.0):
    """The batch's results (within `bound_s`: nothing hangs) and the window size every 10 ms."""
    sizes: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            sizes.append(engine.window.size)
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        results = await asyncio.wait_for(engine.chat(requests), bound_s)
    finally:
        done.set()
        await sampler
        await engine.aclose()
    return results, sizes


def assert_matched_or_recorded(requests, results, base_url: str) -> None:
    assert len(results) == len(requests)  # none lost
    for request, result in zip(requests, results):
        if result.ok:
            assert result.text == f"answer 0 to: {request.messages[-1]['content']}"  # none given another's answer
        else:
            assert base_url in result.error  # a recorded error that names the server


SCENARIOS = {
    "faults_5": dict(mix=MIX_5, seed=3),
    "faults_20": dict(mix=MIX_20, seed=3, retry_after="0"),
    "queue": dict(capacity=8, saturation="queue"),
    "refuse_429": dict(capacity=8, saturation="429"),
    "storm": dict(mix=MIX_STORM, seed=3, retry_after="0"),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_request_ends_matched_or_recorded(spawn, scenario):
    base_url = spawn(**SCENARIOS[scenario])
    requests = asks(scenario, 120)
    results, _ = asyncio.run(chat_sampling(engine_for(base_url, concurrency=32), requests))
    assert_matched_or_recorded(requests, results, base_url)
    if scenario != "storm":
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]


def test_window_does_not_shrink_on_faults_that_say_nothing_about_load(spawn):
    base_url = spawn(mix=NON_LOAD, seed=5)  # 20% of attempts: resets, truncated JSON, 500s, HTML 502s
    engine = engine_for(base_url, concurrency=16)
    requests = asks("nonload", 400)
    results, sizes = asyncio.run(chat_sampling(engine, requests))
    assert all(r.ok for r in results)
    assert engine.retries >= 40  # the faults were there, and were retried
    assert engine.window.stats.cut_reasons["refused"] == 0
    assert sizes[-1] == 16 and engine.window.stats.max_size == 16


async def _release_all(window: AdaptiveWindow, outcome: str) -> None:
    slots = [await window.acquire() for _ in range(window.size)]
    for slot in slots:
        window.release(slot, outcome)


def test_a_burst_of_refusals_cuts_once_and_other_faults_never():
    async def bursts():
        window = AdaptiveWindow(32, start_size=32)
        for _ in range(5):
            await _release_all(window, "fault")  # resets, truncated bodies: retried, not load
        assert window.stats.cuts == 0 and window.size == 32
        await _release_all(window, "load")  # 32 refusals that started together: one cut
        after_burst = window.stats.cuts, window.size
        return after_burst

    assert asyncio.run(bursts()) == (1, 16)


@pytest.mark.parametrize("phases", [
    [(40, 0.1), (1, 0.1)],  # one latency whatever the length: per token, the verdicts are 3x slower
    [(1, 0.03), (40, 0.3)],  # latency with the length: per answer, the replies are 10x slower
], ids=["fixed-latency", "latency-by-length"])
def test_answers_of_another_length_are_not_a_slower_server(phases):
    # A server turning from one kind of request to another (a stage's replies, then its verdicts)
    # is no more loaded for it: each answer is compared with answers of its own length.
    async def mix_change():
        window = AdaptiveWindow(64, start_size=64)
        for tokens, seconds in phases:
            for _ in range(6):
                slots = [await window.acquire() for _ in range(64)]
                await asyncio.sleep(seconds)
                for slot in slots:
                    window.release(slot, "ok", tokens=tokens)
        return window.stats.cuts

    assert asyncio.run(mix_change()) == 0


def test_a_shallow_queue_steps_the_window_back_to_capacity():
    # A server that serves 16 at once and queues the rest: past 16 in flight each answer takes
    # level/16 times as long, and 20 in flight are only 1.25x slower (not slow enough to read as
    # a queue), yet serve no more. Only the step-back (served by Little's law no more than at
    # fewer in flight) keeps the window from growing into the queue.
    capacity, base_s = 16, 0.02

    async def shallow_queue():
        window = AdaptiveWindow(48, start_size=capacity)
        sizes = []

        async def one() -> None:
            slot = await window.acquire()
            await asyncio.sleep(base_s * max(1.0, slot.level / capacity))
            window.release(slot, "ok", tokens=8)
            sizes.append(window.size)

        await asyncio.gather(*(one() for _ in range(2400)))
        return window.stats, sizes

    stats, sizes = asyncio.run(shallow_queue())
    assert stats.steps_back >= 1, stats
    settled = statistics.median(sizes[len(sizes) // 2:])
    assert settled <= 1.3 * capacity, (settled, stats.max_size, stats.cut_reasons)  # the goal: within 30%


@pytest.mark.parametrize("saturation", ["queue", "429"])
def test_window_settles_near_capacity_of_a_saturated_server(spawn, saturation):
    capacity = 8
    base_url = spawn(latency_s=0.1, capacity=capacity, saturation=saturation)
    engine = engine_for(base_url, concurrency=48, timeout_s=10.0)
    requests = asks(saturation, 400)
    results, sizes = asyncio.run(chat_sampling(engine, requests, bound_s=90))
    assert all(r.ok for r in results)
    settled = statistics.median(sizes[len(sizes) // 2:])
    assert 0.5 * capacity <= settled <= 1.6 * capacity, (settled, engine.window.stats)
    stats = engine.window.stats
    if saturation == "queue":  # seen as a queue: cut for one that lasts, stepped back for a shallow one
        assert stats.cut_reasons["queueing"] + stats.steps_back >= 1, stats
    else:
        assert stats.cut_reasons["refused"] >= 1, stats


def test_the_breaker_ends_a_storm_with_one_clear_error(spawn):
    base_url = spawn(mix=MIX_STORM, seed=7, retry_after="0")
    engine = engine_for(base_url, concurrency=16)
    requests = asks("storm", 100)
    started = time.monotonic()
    results, _ = asyncio.run(chat_sampling(engine, requests))
    assert time.monotonic() - started < 10 * DEADLINE_S + 10  # without the breaker: minutes
    assert_matched_or_recorded(requests, results, base_url)
    stopped = [r.error for r in results if r.error and "circuit breaker open" in r.error]
    assert len(stopped) >= 50
    assert len(set(stopped)) == 1  # one message for all of them
    message = stopped[0]
    assert base_url in message and "'fake'" in message and "max_error_rate 0.5" in message
    assert sum(kind in message for kind in ("http 503", "http 429", "timeout", "connection", "bad body")) >= 3
    assert engine.usage.errors == sum(not r.ok for r in results)


def test_on_breaker_fail_raises_out_of_the_batch(spawn):
    base_url = spawn(mix={"503": 1.0})
    engine = engine_for(base_url, concurrency=8, on_breaker="fail", max_retries=1)

    async def failing():
        try:
            await engine.chat(asks("down", 40))
        finally:
            await engine.aclose()

    with pytest.raises(EngineUnavailable, match="circuit breaker open") as raised:
        asyncio.run(failing())
    assert base_url in str(raised.value) and "http 503 x" in str(raised.value)


def test_an_open_breaker_probes_after_its_cooldown_and_closes():
    with FaultServer() as server:
        server.mix = {"503": 1.0}  # down
        spec = ModelSpec(backend="openai", base_url=server.base_url, model="fake", concurrency=4,
                         timeout_s=DEADLINE_S, max_retries=0, breaker_cooldown_s=0.3)
        engine = OpenAIChatEngine("fake-model", spec)

        async def down_then_up():
            first = await engine.chat(asks("down", 60))
            opened, sent_down = engine._caller.breaker.is_open, len(server.bodies)
            server.mix = {}  # up again
            refused = await engine.chat(asks("refused", 3))  # still cooling down: not sent
            sent_refused = len(server.bodies) - sent_down
            await asyncio.sleep(0.4)
            second = await engine.chat(asks("up", 10))
            await engine.aclose()
            return first, opened, sent_down, refused, sent_refused, second

        first, opened, sent_down, refused, sent_refused, second = asyncio.run(down_then_up())
    assert opened and all(not r.ok for r in first)
    assert sent_down < 30  # 10 failures of 10 are enough to stop; the rest were not sent
    assert all("circuit breaker open" in (r.error or "") for r in refused) and sent_refused == 0
    assert all(r.ok for r in second)  # the probe answered: closed again
    assert not engine._caller.breaker.is_open


@pytest.mark.parametrize("field, value, named", [
    ("on_breaker", "explode", "'drop' or 'fail'"),
    ("max_error_rate", 0.0, "greater than 0"),
    ("max_error_rate", 1.5, "less than or equal to 1"),
    ("error_window", 2, "greater than or equal to 10"),
])
def test_breaker_settings_are_checked(field, value, named):
    with pytest.raises(ValidationError) as raised:
        ModelSpec(backend="openai", base_url="http://127.0.0.1:1/v1", model="m", **{field: value})
    assert field in str(raised.value) and named in str(raised.value)
