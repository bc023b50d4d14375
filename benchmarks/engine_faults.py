"""The openai engine under faults and saturation, side by side with what a user would otherwise run.

Every scenario runs against its own fault-injecting server (benchmarks/servers/fault_openai.py,
a subprocess, so its CPU is not the client's) answering in 50 ms, with faults drawn per attempt
but seeded by (request, attempt number): both sides of a comparison meet the same faults on the
same attempts. Our engine runs with its defaults (5 retries, a 5 s deadline, the breaker at max_error_rate 0.5):

    clean       600 requests, concurrency 32, no faults
    faults_5    the same with 5% faults (503, 429 without Retry-After, truncated JSON, resets)
                vs clean: target <= 1.3
    faults_20   300 requests, concurrency 32, 20% faults (429 with Retry-After: 1 5%, 503 5%,
                reset before headers 3%, reset mid-body 2%, truncated JSON 2%, slow past the
                deadline 2%, hang 1%) vs the plain openai client (AsyncOpenAI on its aiohttp
                transport, max_retries 5, timeout 5 s, a semaphore of 32): target <= 1.2, and
                no request lost where the client loses some
    queue       600 requests, concurrency 64, a server that queues past 16 in flight (each extra
                request waits 50 ms more per extra request) vs keeping 16 in flight (the faster
                of the openai client under a semaphore of 16 and our engine at concurrency 16):
                target <= 1.5, the window settled within 30% of 16
    refuse_429  the same server answering 429 past 16 in flight
    storm       100 requests, concurrency 16, every outcome equally likely (2 of 15 answer):
                the breaker ends it; target: done within 3 deadlines

A request is answered (matched: the fake echoes its prompt, so an answer given to the wrong
request is a mismatch), failed with a recorded error, or lost (no result: the batch hung past
HANG_S). "settled" is the median window size over the second half of a run (sampled every 10 ms).

    python benchmarks/engine_faults.py [--small] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

import httpx2  # noqa: E402
from openai import AsyncOpenAI, DefaultAioHttpClient  # noqa: E402

from benchmarks.servers.fault_openai import spawn_fault_server  # noqa: E402
from engines.config import ModelSpec  # noqa: E402
from engines.openai_chat import OpenAIChatEngine  # noqa: E402
from engines.types import ChatRequest  # noqa: E402

LATENCY_S = 0.05
DEADLINE_S = 5.0
RETRIES = 5
CAPACITY = 16
HANG_S = 240.0
MIX_5 = {"503": 0.0125, "429": 0.0125, "truncated": 0.0125, "reset_before": 0.0075, "reset_mid": 0.005}
MIX_20 = {"429": 0.05, "503": 0.05, "reset_before": 0.03, "reset_mid": 0.02, "truncated": 0.02, "slow": 0.02,
          "hang": 0.01}
STORM_FAULTS = ["429", "500", "502", "503", "504", "html", "slow", "hang", "drip", "truncated", "no_choices",
                "reset_before", "reset_mid"]
MIX_STORM = {action: 1 / 15 for action in STORM_FAULTS}


@dataclass
class Run:
    label: str
    seconds: float
    requests: int
    answered: int = 0
    mismatched: int = 0
    lost: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sizes: list[int] = field(default_factory=list)  # window size samples
    note: str = ""

    @property
    def settled(self) -> float | None:
        half = self.sizes[len(self.sizes) // 2:]
        return statistics.median(half) if half else None

    def line(self) -> str:
        window = ""
        if self.sizes:
            half = self.sizes[len(self.sizes) // 2:]
            window = f" window end={self.sizes[-1]} settled={self.settled:g} (2nd half {min(half)}-{max(half)})"
        errors = f" errors={dict(self.errors.most_common())}" if self.errors else ""
        return (f"  {self.label:<34} {self.seconds:6.2f}s answered={self.answered}/{self.requests} "
                f"mismatched={self.mismatched} lost={self.lost}{errors}{window}{self.note}")


def prompts(tag: str, count: int) -> list[str]:
    return [f"{tag} request {i}" for i in range(count)]


def expected(prompt: str) -> str:
    return f"answer 0 to: {prompt}"


def error_kind(error: str) -> str:
    """'http://... model 'fake': http 503 after 6 tries: ...' -> 'http 503'."""
    if "circuit breaker open" in error:
        return "circuit breaker open"
    tail = error.split(": ", 1)[-1]
    return tail.split(" after ", 1)[0]


async def run_ours(label: str, base_url: str, texts: list[str], concurrency: int, deadline_s: float) -> Run:
    spec = ModelSpec(backend="openai", base_url=base_url, model="fake", concurrency=concurrency,
                     timeout_s=deadline_s, max_retries=RETRIES)
    engine = OpenAIChatEngine("bench", spec)
    requests = [ChatRequest(messages=[{"role": "user", "content": t}], max_tokens=16) for t in texts]
    run = Run(label, 0.0, len(texts))
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            run.sizes.append(engine.window.size)
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        results = await asyncio.wait_for(engine.chat(requests), HANG_S)
    except TimeoutError:
        results = []
    run.seconds = time.perf_counter() - started
    done.set()
    await sampler
    run.lost = len(texts) - len(results)
    for text, result in zip(texts, results):
        if result.ok:
            run.answered += 1
            run.mismatched += result.text != expected(text)
        else:
            run.errors[error_kind(result.error or "")] += 1
    stats = engine.window.stats
    run.note = f" cuts={dict(stats.cut_reasons)} undone={stats.undone} retries={engine.retries}"
    if engine._caller.breaker.trips:
        run.note += f" breaker_trips={engine._caller.breaker.trips}"
    await engine.aclose()
    return run


async def run_openai(label: str, base_url: str, texts: list[str], concurrency: int, deadline_s: float) -> Run:
    """The plain openai client as a user would run it: its own retries, a semaphore for concurrency."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=RETRIES, timeout=deadline_s,
                         http_client=DefaultAioHttpClient(limits=limits))
    gate = asyncio.Semaphore(concurrency)
    run = Run(label, 0.0, len(texts))

    async def one(text: str) -> None:
        async with gate:
            try:
                answer = await client.chat.completions.create(
                    model="fake", messages=[{"role": "user", "content": text}], max_tokens=16)
            except Exception as exc:  # noqa: BLE001 - what the client raised is the recorded error
                run.errors[type(exc).__name__] += 1
                return
        run.answered += 1
        run.mismatched += answer.choices[0].message.content != expected(text)

    started = time.perf_counter()
    tasks = [asyncio.create_task(one(t)) for t in texts]
    _, pending = await asyncio.wait(tasks, timeout=HANG_S)
    run.seconds = time.perf_counter() - started
    for task in pending:
        task.cancel()
    run.lost = len(pending)
    await client.close()
    return run


def server_actions(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as answer:
        return json.loads(answer.read())["actions"]


async def against_server(runner, label: str, texts: list[str], concurrency: int, deadline_s: float,
                         **server) -> Run:
    proc, base_url = spawn_fault_server(LATENCY_S, slow_s=deadline_s + 1.0, **server)
    try:
        run = await runner(label, base_url, texts, concurrency, deadline_s)
        actions = server_actions(base_url)
        run.note += f" server={dict(sorted(actions.items(), key=lambda kv: -kv[1]))}"
        return run
    finally:
        proc.terminate()
        proc.wait(10)


def verdict(name: str, ratio: float, target: float, extra: str = "") -> str:
    met = "met" if ratio <= target else "NOT met"
    return f"{name}: ratio={ratio:.3f} target<={target:g} {met}{extra}"


def every_request_accounted(*runs: Run) -> str:
    # Ours must lose nothing and mismatch nothing; a recorded error is an accounted-for ending.
    bad = [r.label for r in runs if r.lost or r.mismatched]
    return "none lost or mismatched" if not bad else f"LOST OR MISMATCHED in {bad}"


async def main_async(args: argparse.Namespace) -> None:
    scale = 0.25 if args.small else 1.0
    deadline = 2.0 if args.small else DEADLINE_S
    n600, n300, n100 = int(600 * scale), int(300 * scale), max(40, int(100 * scale))
    seed = args.seed
    lines, ours = [], []
    print(f"latency={LATENCY_S}s deadline={deadline}s retries={RETRIES} seed={seed} cores={os.cpu_count()}")

    clean = await against_server(run_ours, "clean: ours", prompts("clean", n600), 32, deadline)
    five = await against_server(run_ours, "faults_5: ours", prompts("clean", n600), 32, deadline,
                                mix=MIX_5, seed=seed)
    print("faults_5 (vs the same requests without faults)")
    print(clean.line())
    print(five.line())
    ours += [clean, five]
    lines.append(verdict("faults_5", five.seconds / clean.seconds, 1.3))

    twenty = await against_server(run_ours, "faults_20: ours", prompts("mix", n300), 32, deadline,
                                  mix=MIX_20, seed=seed, retry_after="1")
    plain = await against_server(run_openai, "faults_20: openai client", prompts("mix", n300), 32, deadline,
                                 mix=MIX_20, seed=seed, retry_after="1")
    print("faults_20 (vs the plain openai client)")
    print(twenty.line())
    print(plain.line())
    ours.append(twenty)
    failed_ours, failed_plain = sum(twenty.errors.values()), sum(plain.errors.values()) + plain.lost
    losses_ok = failed_ours == 0 or failed_plain == 0
    lines.append(verdict("faults_20", twenty.seconds / plain.seconds, 1.2,
                         f"; failed ours={failed_ours} openai={failed_plain}"
                         f" ({'ok' if losses_ok else 'NOT met: ours fails where the client fails too'})"))

    for name, saturation in (("queue", "queue"), ("refuse_429", "429")):
        mine = await against_server(run_ours, f"{name}: ours, concurrency 64", prompts(name, n600), 64, deadline,
                                    capacity=CAPACITY, saturation=saturation)
        # Keeping the capacity in flight, two ways: the plain client under a semaphore, and our
        # engine with concurrency 16 (its window never above it); the faster one is the reference.
        plain16 = await against_server(run_openai, f"{name}: openai client, 16 in flight", prompts(name, n600),
                                       CAPACITY, deadline, capacity=CAPACITY, saturation=saturation)
        ours16 = await against_server(run_ours, f"{name}: ours, concurrency 16", prompts(name, n600),
                                      CAPACITY, deadline, capacity=CAPACITY, saturation=saturation)
        print(f"{name} (vs keeping the server's capacity, {CAPACITY}, in flight)")
        for run in (mine, plain16, ours16):
            print(run.line())
        ours += [mine, ours16]
        settled = mine.settled or 0
        near = abs(settled - CAPACITY) <= 0.3 * CAPACITY
        reference = min(plain16.seconds, ours16.seconds)
        where = "within" if near else "NOT within"
        lines.append(verdict(name, mine.seconds / reference, 1.5,
                             f"; window settled at {settled:g} ({where} 30% of {CAPACITY})"))

    bound = 3 * deadline
    storm = await against_server(run_ours, "storm: ours", prompts("storm", n100), 16, deadline,
                                 mix=MIX_STORM, seed=seed, retry_after="1")
    print(f"storm (2 of 15 outcomes answer; bound {bound:g}s)")
    print(storm.line())
    ours.append(storm)
    stopped = storm.errors.get("circuit breaker open", 0)
    lines.append(verdict("storm", storm.seconds / bound, 1.0, f"; {stopped} ended by the breaker"))

    print()
    print(f"every request: {every_request_accounted(*ours)}")
    for line in lines:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quarter of the requests, a 2 s deadline")
    parser.add_argument("--seed", type=int, default=1, help="seeds the faults drawn per attempt")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
