"""What the `openai` engine costs over the bare minimum an async client can do.

1000 chat requests at concurrency 64 against a local OpenAI-compatible server that answers
after 100 ms (a subprocess, so its CPU does not share the client's event loop): once through
OpenAIChatEngine, once through raw aiohttp with an asyncio.Semaphore(64) (the floor). The two
run alternately, best of a few rounds each, so both see the same machine load.

Prints both times and `ratio=<engine/floor>`; the target is <= 1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from benchmarks.servers.fake_openai import spawn_server  # noqa: E402
from engines.config import ModelSpec  # noqa: E402
from engines.openai_chat import OpenAIChatEngine  # noqa: E402
from engines.types import ChatRequest  # noqa: E402

MODEL = "fake"


def chats(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"}] for i in range(count)]


async def run_floor(base_url: str, conversations: list, concurrency: int) -> float:
    """Raw aiohttp: one session, a semaphore, the JSON decoded and the text taken out."""
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(messages: list) -> str:
            payload = {"model": MODEL, "messages": messages, "temperature": 0.7, "top_p": 0.95, "max_tokens": 256}
            async with limit, session.post(f"{base_url}/chat/completions", json=payload) as response:
                data = await response.json()
                return data["choices"][0]["message"]["content"]

        started = time.perf_counter()
        texts = await asyncio.gather(*(one(m) for m in conversations))
        elapsed = time.perf_counter() - started
    assert len(texts) == len(conversations) and all(texts)
    return elapsed


async def run_engine(base_url: str, conversations: list, concurrency: int) -> float:
    spec = ModelSpec(backend="openai", base_url=base_url, model=MODEL, concurrency=concurrency)
    engine = OpenAIChatEngine("bench", spec)
    try:
        started = time.perf_counter()
        results = await engine.chat([ChatRequest(messages=m) for m in conversations])
        elapsed = time.perf_counter() - started
    finally:
        await engine.aclose()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="openai engine overhead vs a raw aiohttp floor")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="server answer delay, seconds")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best of each kept")
    args = parser.parse_args()

    server, base_url = spawn_server(latency_s=args.latency)
    try:
        conversations = chats(args.requests)
        asyncio.run(run_floor(base_url, conversations[:64], args.concurrency))  # warm the server up
        floor_runs, engine_runs = [], []
        for _ in range(args.rounds):
            floor_runs.append(timed(run_floor(base_url, conversations, args.concurrency)))
            engine_runs.append(timed(run_engine(base_url, conversations, args.concurrency)))
    finally:
        server.terminate()
        server.wait(10)

    floor, engine = min(t for t, _ in floor_runs), min(t for t, _ in engine_runs)
    ideal = args.requests / args.concurrency * args.latency
    print(f"requests={args.requests} concurrency={args.concurrency} latency={args.latency}s ideal={ideal:.2f}s "
          f"load_avg_1m={os.getloadavg()[0]:.2f} cores={os.cpu_count()}")
    # Client CPU explains a ratio that grows when other processes compete for the cores.
    print("floor (raw aiohttp + semaphore) wall/cpu s: " + " ".join(f"{t:.3f}/{c:.3f}" for t, c in floor_runs))
    print("engine (OpenAIChatEngine)       wall/cpu s: " + " ".join(f"{t:.3f}/{c:.3f}" for t, c in engine_runs))
    print(f"floor={floor:.3f}s engine={engine:.3f}s ratio={engine / floor:.3f}")


def timed(run) -> tuple[float, float]:
    """(wall seconds the run reports, client CPU seconds spent in it)."""
    cpu_before = time.process_time()
    wall = asyncio.run(run)
    return wall, time.process_time() - cpu_before


if __name__ == "__main__":
    main()
