"""The preferences stage against a latency-simulating OpenAI-compatible server.

2,000 published prompts (most open QA, some math with reference answers, some instruction
following with `punctuation:no_comma`) get 4 responses each from one served generator, every
response graded by the `llm-judge` reward (the same served model asked for five attribute
grades), then the judges in order: ground truth, verifier, reward model and the LLM judge, which
reads every prompt twice (order swapped). Everything goes through one window of 64 requests.

The server is the foundation benchmark's fake, as a subprocess in `--preferences` mode: it
answers by what is asked (half the responses of a prompt good, half bad; grades and verdicts that
read the marked reply) after 100 ms. The requests are counted by the server (`/v1/stats`), not
assumed: 8,000 generations + 8,000 grades + 2 x 2,000 pairwise readings at scale 1.

ideal = requests x latency / concurrency: what a perfectly packed window of 64 would take.
Prints prompts/s, pairs/s, requests, both times and `ratio=<stage time/ideal>`; the target is <= 1.5.

Calibration is off (`calibration.enabled: false`): a judge's calibration is measured once per
model spec and pairs file and kept in the catalog, so a night pays it only when a model changes;
it is not part of the steady-state stage time measured here.

Outside the clock: the prompts are landed and gated beforehand (batches of 500), and a warm-up
flow starts the Prefect API (a temporary local server). The flow's gate worker process starts
inside the clock, as in a deployment's run.

    python benchmarks/preferences_stage.py [--scale 0.25] [--rounds 2] [--batch-size 64] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

# Prefect and the flow are imported in main(): the gate worker process re-imports this module
# (multiprocessing's spawn does), and should not pay for them.

LATENCY_S = 0.1
CONCURRENCY = 64
PROMPTS = 2000
K = 4
RUN_DATE = "2026-01-01"
LANDING = 500  # prompts per landed batch, before the clock
# The best of the batch_size x batches_in_flight sweep (see the report of this benchmark's issue).
BATCH_SIZE = 64
BATCHES_IN_FLIGHT = 4


def prompt_rows(count: int, seed: int = 1) -> list[dict]:
    """Mixed task types: 1 in 10 math (reference answer), 1 in 10 instruction following, the rest open QA.

    Texts are 30-45 made-up words. Open QA has no fixed words at all: the gates' one-permutation
    MinHash over a short text fills few of its 128 bins, the empty ones borrow from their
    neighbours, and a template phrase shared by two short texts can then fill a whole LSH band
    alike (a band match against published rows is a verdict, unverified). The math and
    instruction-following templates still lose a few prompts and pairs that way (see `drops=`).
    """
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "so", "vi", "del", "bar", "qui", "zen", "pos", "gra"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=3)) for _ in range(6000)})
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(count):
        words = " ".join(rng.choices(vocabulary, k=rng.randint(30, 45)))
        ref, ids, kwargs = None, None, None
        if i % 10 == 0:
            a, b = rng.randint(10, 999), rng.randint(10, 999)
            task, text, ref = "math", f"What is {a} plus {b}? Think of {words}.", str(a + b)
        elif i % 10 == 1:
            task, text = "instruction_following", f"Describe the {words}. Do not use any commas."
            ids, kwargs = ["punctuation:no_comma"], json.dumps([{}])
        else:
            task, text = "open_qa", f"{words.capitalize()}?"  # no fixed words: see the docstring
        rows.append({"id": f"p{i:06d}", "task_type": task, "messages": [{"role": "user", "content": text}],
                     "reference_answer": ref, "instruction_ids": ids, "instruction_kwargs": kwargs,
                     "source": "synthetic", "run_id": "prompts-run", "batch_id": "", "stage": "prompts",
                     "created_at": created})
    return rows


def publish_prompts(config, count: int) -> None:
    from quality.config import QualityConfig
    from quality.gate import run_gate
    from storage.catalog import Catalog
    from storage.lake import Lake

    lake = Lake(config.lake)
    catalog = Catalog(config.lake, lake)
    rows = prompt_rows(count)
    for start in range(0, len(rows), LANDING):
        batch = f"prompts-b{start // LANDING:03d}"
        part = [{**r, "batch_id": batch} for r in rows[start:start + LANDING]]
        staged = lake.stage_batch("prompts", RUN_DATE, batch, part)
        report = run_gate(lake, catalog, staged, QualityConfig(), "prompts-run", artifacts=False)
        if report.state != "published":
            raise RuntimeError(f"prompts batch {batch} was not published: {report.state}")


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
        "preferences": {
            "enabled": True, "responses_per_prompt": K, "generators": [{"model": "served"}],
            "reward": "grader", "judges": ["ground_truth", "verifier", "reward_model", "llm_judge"],
            "llm_judge": {"model": "served"}, "calibration": {"enabled": False},
            "batch_size": batch_size, "batches_in_flight": in_flight,
        },
    }


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as answer:
        return json.loads(answer.read())


class Timeline:
    """Samples the server's open requests every 0.1 s while the stage runs: how full the window is."""

    def __init__(self, base_url: str) -> None:
        import threading

        self.base_url, self.samples, self._stop = base_url, [], threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        started = time.perf_counter()
        while not self._stop.wait(0.1):
            self.samples.append((time.perf_counter() - started, server_stats(self.base_url)["in_flight"]))

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, bucket_s: float = 2.0) -> str:
        """Mean open requests per bucket of seconds, and the share of samples with a full window."""
        buckets: dict[int, list[int]] = {}
        for t, n in self.samples:
            buckets.setdefault(int(t // bucket_s), []).append(n)
        means = " ".join(f"{sum(v) / len(v):.0f}" for _, v in sorted(buckets.items()))
        full = sum(n >= CONCURRENCY for _, n in self.samples) / max(1, len(self.samples))
        return f"in_flight_per_{bucket_s:g}s=[{means}] window_full={full:.0%}"


@dataclass
class Round:
    elapsed: float
    requests: int  # counted by the server
    openai: int  # counted by the catalog's usage record
    summary: dict
    drops: dict | None
    timeline: Timeline
    window: str


async def played(stage_flow, config) -> tuple[dict, str]:
    """The stage's summary and its server window's sizes (the engines stay open until they are read)."""
    from engines.registry import engine_scope, open_engines

    async with engine_scope():
        summary = await stage_flow(config, RUN_DATE)
        stats = open_engines()[("chat", "served")].window.stats
        return summary, f"window min={stats.min_size} max={stats.max_size} cuts={stats.cuts}"


def timed_rounds(stage_flow, stage_config, count: int, rounds: int) -> tuple[list[Round], Round]:
    """Each round: a fresh lake with `count` published prompts, then the stage flow under the clock,
    against the fake server in `--preferences` mode. All rounds, and the best (time per request)."""
    from prefect import flow

    from benchmarks.servers.fake_openai import spawn_server
    from flows.config import parse_config

    warm_up = flow(name="warm-up")(lambda: None)  # starts the Prefect API before the clock does
    server, base_url = spawn_server(LATENCY_S, preferences=True)
    done = []
    try:
        warm_up()
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                config = parse_config(stage_config(base_url, Path(tmp)))
                publish_prompts(config, count)
                before = server_stats(base_url)["requests"]
                with Timeline(base_url) as timeline:
                    started = time.perf_counter()
                    summary, window = asyncio.run(played(stage_flow, config))
                    elapsed = time.perf_counter() - started
                requests = server_stats(base_url)["requests"] - before
                openai = _catalog_value(config, "SELECT sum(requests) FROM usage WHERE backend = 'openai'")
                drops = _catalog_value(config, "SELECT map(list(reason), list(n)) FROM (SELECT reason, "
                                               "sum(count)::INT AS n FROM drops GROUP BY ALL)")
                done.append(Round(elapsed, requests, openai, summary, drops, timeline, window))
    finally:
        server.terminate()
        server.wait(10)
    return done, min(done, key=lambda r: r.elapsed / r.requests)


def main() -> None:
    from flows.preferences import preferences_flow

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help=f"fraction of {PROMPTS:,} prompts")
    parser.add_argument("--rounds", type=int, default=2, help="fresh lake each round; the best one counts")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="preferences.batch_size")
    parser.add_argument("--in-flight", type=int, default=BATCHES_IN_FLIGHT, help="preferences.batches_in_flight")
    args = parser.parse_args()
    count = max(1, int(PROMPTS * args.scale))
    rounds, best = timed_rounds(preferences_flow, lambda url, folder: stage_config(url, folder, args.batch_size,
                                                                                   args.in_flight),
                                count, args.rounds)
    summary, ideal = best.summary, best.requests * LATENCY_S / CONCURRENCY
    states = sorted({b["state"] for b in summary["batches"]})
    print(f"prompts={summary['prompts']} responses={summary['responses']} pairs={summary['pairs']} "
          f"per_judge={summary['pairs_per_judge']} best_of_n={summary['best_of_n']} gate_states={states}")
    print(f"drops={best.drops}")
    print(f"requests={best.requests} (catalog usage, openai: {best.openai}) concurrency={CONCURRENCY} "
          f"latency_s={LATENCY_S} batch_size={args.batch_size} batches_in_flight={args.in_flight} cores={os.cpu_count()}")
    print(f"rounds_s={[round(r.elapsed, 2) for r in rounds]}")
    print(f"stage_s={best.elapsed:.2f} ideal_s={ideal:.2f} prompts_per_s={summary['prompts'] / best.elapsed:.1f} "
          f"pairs_per_s={summary['pairs'] / best.elapsed:.1f}")
    print(best.timeline.summary(), best.window)
    print(f"ratio={best.elapsed / ideal:.3f}")


def _catalog_value(config, sql: str):
    from storage.catalog import Catalog

    return Catalog(config.lake).query(sql).column(0)[0].as_py()


if __name__ == "__main__":
    main()
