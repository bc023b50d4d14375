"""The dialogues stage against a latency-simulating OpenAI-compatible server.

2,000 published prompts (the preferences benchmark's mix) are role-played for 3 rounds: per round
one assistant turn and one reward request (the `llm-judge` reward: the same served model asked
for five attribute grades), and between rounds one simulated-user turn. Everything goes through
one window of 64 requests. Rounds of one dialogue are sequential, so many dialogues must be in
flight at once: `batch_size` x `batches_in_flight` of them.

The server is the foundation benchmark's fake, as a subprocess in `--preferences` mode (it also
plays the user), answering after 100 ms. The requests are counted by the server (`/v1/stats`):
2,000 x (3 assistant + 3 reward + 2 user) = 16,000 at scale 1.

ideal = requests x latency / concurrency: what a perfectly packed window of 64 would take.
Prints dialogues/s, requests, both times and `ratio=<stage time/ideal>`; the target is <= 1.5.
Outside the clock: the prompts are landed and gated beforehand, and a warm-up flow starts the
Prefect API. The flow's gate worker starts inside the clock, as in a deployment's run.

    python benchmarks/dialogues_stage.py [--scale 0.25] [--rounds 2] [--batch-size 64] [--in-flight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from benchmarks.preferences_stage import (  # noqa: E402 - light: Prefect is imported in main()
    CONCURRENCY, LATENCY_S, PROMPTS, RUN_DATE, Timeline, _catalog_value, publish_prompts, server_stats)

ROUNDS = 3
BATCH_SIZE = 64
BATCHES_IN_FLIGHT = 8


def stage_config(base_url: str, folder: Path, batch_size: int, in_flight: int) -> dict:
    return {
        "name": "bench",
        "lake": {"root": str(folder / "lake")},
        "models": {
            "served": {"backend": "openai", "base_url": base_url, "model": "fake", "concurrency": CONCURRENCY,
                       "timeout_s": 30},
            "grader": {"kind": "reward", "backend": "llm-judge", "judge": "served"},
        },
        "prompts": {"enabled": False},
        "dialogues": {"enabled": True, "rounds": ROUNDS, "assistant": {"model": "served"}, "reward": "grader",
                      "batch_size": batch_size, "batches_in_flight": in_flight},
    }


async def played(stage_flow, config):
    """The stage's summary and its server window's sizes (the engines stay open until they are read)."""
    from engines.registry import engine_scope, open_engines

    async with engine_scope():
        summary = await stage_flow(config, RUN_DATE)
        stats = open_engines()[("chat", "served")].window.stats
        return summary, f"window min={stats.min_size} max={stats.max_size} cuts={stats.cuts}"


def main() -> None:
    from prefect import flow

    from benchmarks.servers.fake_openai import spawn_server
    from flows.config import parse_config
    from flows.dialogues import dialogues_flow

    warm_up = flow(name="warm-up")(lambda: None)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help=f"fraction of {PROMPTS:,} prompts")
    parser.add_argument("--rounds", type=int, default=2, help="fresh lake each round; the best one counts")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="dialogues.batch_size")
    parser.add_argument("--in-flight", type=int, default=BATCHES_IN_FLIGHT, help="dialogues.batches_in_flight")
    args = parser.parse_args()
    count = max(1, int(PROMPTS * args.scale))
    server, base_url = spawn_server(LATENCY_S, preferences=True)
    rounds = []
    try:
        warm_up()
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                config = parse_config(stage_config(base_url, Path(tmp), args.batch_size, args.in_flight))
                publish_prompts(config, count)
                before = server_stats(base_url)["requests"]
                with Timeline(base_url) as timeline:
                    started = time.perf_counter()
                    summary, window = asyncio.run(played(dialogues_flow, config))
                    elapsed = time.perf_counter() - started
                requests = server_stats(base_url)["requests"] - before
                openai = _catalog_value(config, "SELECT sum(requests) FROM usage WHERE backend = 'openai'")
                rounds.append((elapsed, requests, openai, summary, timeline, window))
    finally:
        server.terminate()
        server.wait(10)
    elapsed, requests, openai, summary, timeline, window = min(rounds, key=lambda r: r[0] / r[1])
    ideal = requests * LATENCY_S / CONCURRENCY
    states = sorted({b["state"] for b in summary["batches"]})
    print(f"prompts={summary['prompts']} played={summary['played']} dialogues={summary['dialogues']} "
          f"user_turns={summary['user_turns']} gate_states={states} drops={summary['drops']} "
          f"retried={summary['retried']}")
    print(f"requests={requests} (catalog usage, openai: {openai}) concurrency={CONCURRENCY} latency_s={LATENCY_S} "
          f"batch_size={args.batch_size} batches_in_flight={args.in_flight} cores={os.cpu_count()}")
    print(f"rounds_s={[round(r[0], 2) for r in rounds]}")
    print(f"stage_s={elapsed:.2f} ideal_s={ideal:.2f} dialogues_per_s={summary['dialogues'] / elapsed:.1f}")
    print(timeline.summary(), window)
    print(f"ratio={elapsed / ideal:.3f}", flush=True)


if __name__ == "__main__":
    main()
