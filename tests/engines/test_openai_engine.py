"""The openai chat engine against a local fault-injecting server: retries, errors, window, n."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.servers.fake_openai import spawn_server
from engines.config import ModelSpec
from engines.openai_chat import OpenAIChatEngine
from engines.openai_http import parse_retry_after, token_counts
from engines.types import ChatEngine, ChatRequest, chat_sync
from tests.engines.fault_server import FaultServer

pytestmark = pytest.mark.timeout(60)

DEADLINE_S = 0.5

# fault -> what the final error must say about it
FAULTS = {
    "429": "http 429",
    "500": "http 500",
    "502": "http 502",
    "503": "http 503",
    "html": "http 502",
    "slow": "timeout",
    "drip": "timeout",
    "truncated": "bad body",
    "no_choices": "no choices",
    "reset_before": "connection",
    "reset_mid": "connection",
}


@pytest.fixture
def server():
    with FaultServer(slow_s=3.0, drip_interval_s=0.05) as fault_server:
        yield fault_server


def make_engine(server: FaultServer, concurrency: int = 8, retries: int = 2, **spec_fields) -> OpenAIChatEngine:
    spec = ModelSpec(
        backend="openai",
        base_url=server.base_url,
        model="fake",
        concurrency=concurrency,
        timeout_s=DEADLINE_S,
        max_retries=retries,
        **spec_fields,
    )
    return OpenAIChatEngine("fake-model", spec, backoff_base_s=0.01, backoff_cap_s=0.05)


def ask(text: str, **fields) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **fields)


async def run(engine: OpenAIChatEngine, requests: list[ChatRequest]):
    try:
        return await engine.chat(requests)
    finally:
        await engine.aclose()


def test_engine_speaks_the_chat_protocol(server):
    engine = make_engine(server)
    assert isinstance(engine, ChatEngine) and engine.backend == "openai" and engine.model_name == "fake"
    asyncio.run(engine.aclose())


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_retried_then_succeeds(server, fault):
    server.script = [fault]
    engine = make_engine(server)
    [result] = asyncio.run(run(engine, [ask("hello")]))
    assert result.ok, result.error
    assert result.text == "answer 0 to: hello"
    assert [action for _, action in server.actions] == [fault, "ok"]
    assert engine.retries == 1


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_after_the_last_try_the_error_names_server_model_fault_and_tries(server, fault):
    server.script = [fault] * 3
    engine = make_engine(server, retries=2)
    started = time.monotonic()
    [result] = asyncio.run(run(engine, [ask("hello")]))
    assert time.monotonic() - started < 3 * DEADLINE_S + 4.5  # bounded: without deadlines >= 9 s
    assert not result.ok and result.completions == []
    assert server.base_url in result.error
    assert "'fake'" in result.error
    assert FAULTS[fault] in result.error
    assert "after 3 tries" in result.error
    assert engine.usage.errors == 1


@pytest.mark.parametrize("status", ["400", "401", "404", "422"])
def test_client_errors_are_not_retried(server, status):
    server.script = [status]
    engine = make_engine(server, retries=3)
    [result] = asyncio.run(run(engine, [ask("bad")]))
    assert f"http {status} after 1 try" in result.error
    assert len(server.actions) == 1


@pytest.mark.parametrize("status", ["408", "409"])
def test_timeout_and_conflict_statuses_are_retried(server, status):
    server.script = [status]
    [result] = asyncio.run(run(make_engine(server), [ask("again")]))
    assert result.ok and len(server.actions) == 2


def test_retry_after_is_honoured(server):
    server.retry_after = "0.4"
    server.script = ["429"]
    started = time.monotonic()
    [result] = asyncio.run(run(make_engine(server), [ask("wait")]))
    assert result.ok and time.monotonic() - started >= 0.4


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({}) is None


def test_a_mixed_batch_keeps_order_and_loses_nothing(server):
    # Later prompts answer sooner, and some fail once first: results still come back in order.
    prompts = [f"q{i}" for i in range(40)]
    for i, prompt in enumerate(prompts):
        faults = [list(FAULTS)[i % len(FAULTS)]] if i % 3 == 0 else []
        server.script_by_prompt[prompt] = faults + [f"delay:{(40 - i) * 0.002}"]
    results = asyncio.run(run(make_engine(server, concurrency=16, retries=3), [ask(p) for p in prompts]))
    assert [r.text for r in results] == [f"answer 0 to: {p}" for p in prompts]


def test_window_is_rolling_and_bounded(server):
    server.latency_s = 0.02
    engine = make_engine(server, concurrency=8)
    results = asyncio.run(run(engine, [ask(f"q{i}") for i in range(100)]))
    assert all(r.ok for r in results)
    assert server.max_in_flight == 8
    assert engine.window.in_flight == 0


def test_window_shrinks_under_429_and_5xx_then_recovers(server):
    server.latency_s = 0.01  # well above scheduling noise, which the latency signal must not read as load
    server.script = ["429"] * 20 + ["503"] * 20
    # 40 faults in a row would open the circuit breaker (tests/engines/test_engine_faults.py); off here.
    engine = make_engine(server, concurrency=16, retries=8, max_error_rate=1.0)

    async def two_batches():
        first = await engine.chat([ask(f"a{i}") for i in range(40)])
        low = engine.window.stats.min_size
        second = await engine.chat([ask(f"b{i}") for i in range(600)])
        await engine.aclose()
        return first + second, low

    results, low = asyncio.run(two_batches())
    assert all(r.ok for r in results)
    assert low <= 4  # halved at least twice
    history = list(engine.window.stats.history)
    lowest_at = len(history) - 1 - history[::-1].index(min(history))
    assert max(history[lowest_at:]) == 16, (history[lowest_at:], engine.window.stats)  # additive increase brought it back


def test_window_shrinks_when_latency_rises(server):
    server.latency_s = 0.01
    engine = make_engine(server, concurrency=16)

    async def slow_down():
        await engine.chat([ask(f"fast{i}") for i in range(64)])
        server.latency_s = 0.15  # a saturated server answers much later
        results = await engine.chat([ask(f"slow{i}") for i in range(32)])
        await engine.aclose()
        return results

    results = asyncio.run(slow_down())
    assert all(r.ok for r in results)
    assert engine.window.stats.cuts >= 1 and engine.window.stats.min_size < 16


def test_n_is_topped_up_when_the_server_ignores_it(server):
    server.ignore_n = True
    engine = make_engine(server)

    async def two_requests():
        first = await engine.chat([ask("many", n=3, seed=7)])
        second = await engine.chat([ask("more", n=2, seed=100)])
        await engine.aclose()
        return first + second

    first, second = asyncio.run(two_requests())
    assert first.ok and len(first.completions) == 3
    assert [b.get("seed") for b in server.bodies[:3]] == [7, 8, 9]  # one asked n=3, then two top-ups
    assert server.bodies[0]["n"] == 3 and "n" not in server.bodies[1]
    assert second.ok and len(second.completions) == 2
    assert [b.get("seed") for b in server.bodies[3:]] == [100, 101]  # learned: split at once


def test_n_is_not_topped_up_when_honoured(server):
    [result] = asyncio.run(run(make_engine(server), [ask("pair", n=2)]))
    assert [c.text for c in result.completions] == ["answer 0 to: pair", "answer 1 to: pair"]
    assert len(server.bodies) == 1


def test_sampling_defaults_schema_and_stop_reach_the_server(server):
    engine = make_engine(server, sampling={"temperature": 0.3, "top_p": 0.9, "max_tokens": 64, "seed": 5})
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    requests = [ask("defaults"), ask("own", temperature=0.0, max_tokens=8, seed=1, stop=["\n"], json_schema=schema)]
    asyncio.run(run(engine, requests))
    defaults, own = sorted(server.bodies, key=lambda b: b["messages"][0]["content"])
    assert (defaults["temperature"], defaults["top_p"], defaults["max_tokens"], defaults["seed"]) == (0.3, 0.9, 64, 5)
    assert "stop" not in defaults and "response_format" not in defaults
    assert (own["temperature"], own["max_tokens"], own["seed"], own["stop"]) == (0.0, 8, 1, ["\n"])
    assert own["response_format"]["type"] == "json_schema"
    assert own["response_format"]["json_schema"]["schema"] == schema


def test_usage_is_counted(server):
    server.script = ["500", "400"]  # one retried, one failed for good
    engine = make_engine(server, concurrency=1)
    results = asyncio.run(run(engine, [ask("one two"), ask("three"), ask("four five six")]))
    assert [r.ok for r in results].count(False) == 1
    usage = engine.usage
    assert usage.requests == 3 and usage.errors == 1
    assert usage.prompt_tokens == sum(r.prompt_tokens for r in results) > 0
    assert usage.completion_tokens == sum(r.completion_tokens for r in results) > 0
    assert usage.seconds > 0


def test_api_key_comes_from_the_named_environment_variable(server, monkeypatch):
    monkeypatch.setenv("SDG_TEST_KEY", "secret-123")
    engine = make_engine(server, api_key_env="SDG_TEST_KEY")
    assert engine._caller.client.api_key == "secret-123"
    asyncio.run(engine.aclose())


@pytest.mark.parametrize("usage, counts", [
    ({"prompt_tokens": 3, "completion_tokens": 5}, (3, 5)),
    (None, (0, 0)),
    ("lots", (0, 0)),
    ({"prompt_tokens": "3", "completion_tokens": -1}, (0, 0)),
])
def test_token_counts_survive_garbled_usage(usage, counts):
    assert token_counts({"usage": usage}) == counts


def test_subprocess_server_serves_scripted_answers(tmp_path):
    # The benchmarks start the fake server this way, with their own answer texts.
    answers = tmp_path / "answers.jsonl"
    answers.write_text('"first scripted"\n"second scripted"\n', encoding="utf-8")
    proc, base_url = spawn_server(latency_s=0.0, answers_file=str(answers))
    try:
        spec = ModelSpec(backend="openai", base_url=base_url, model="fake", concurrency=1, timeout_s=5)
        engine = OpenAIChatEngine("fake-model", spec)
        results = asyncio.run(run(engine, [ask("a"), ask("b"), ask("c")]))
    finally:
        proc.terminate()
        proc.wait(10)
    assert [r.text for r in results] == ["first scripted", "second scripted", "first scripted"]


def test_one_engine_serves_many_event_loops_and_threads(server):
    # Built once per process by the registry, then called through chat_sync (a new loop per
    # call) and from Prefect's worker threads: the client stays on the engine's own loop.
    engine = make_engine(server, concurrency=4)
    first = chat_sync(engine, [ask("one")])
    second = chat_sync(engine, [ask("two")])
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda i: chat_sync(engine, [ask(f"t{i}")]), range(3)))
    assert [r[0].text for r in (first, second, *threaded)] == [
        "answer 0 to: one", "answer 0 to: two", "answer 0 to: t0", "answer 0 to: t1", "answer 0 to: t2"]
    assert server.max_in_flight <= 4  # one window for every caller
    asyncio.run(engine.aclose())  # from yet another loop


def test_a_cancelled_batch_gives_every_window_slot_back(server):
    server.latency_s = 2.0
    engine = make_engine(server, concurrency=4)

    async def cancel_midway():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(engine.chat([ask(f"q{i}") for i in range(20)]), 0.3)
        await asyncio.sleep(0.2)  # the engine's loop unwinds the cancelled requests
        slots = engine.window.in_flight
        await engine.aclose()
        return slots

    assert asyncio.run(cancel_midway()) == 0
