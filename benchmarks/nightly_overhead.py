"""The whole nightly flow against latency-simulating OpenAI-compatible servers: what Prefect, the lake
and the gates add to a night, all together.

One night as a deployment runs it (`flows/nightly.py`): the prompts stage makes about 20,000 prompts
(the prompts benchmark's config at 3.6 times its scale), the preferences stage answers every published
one (4 responses, each graded, then the judges; the preferences benchmark's settings) and the
dialogues stage role-plays every one for 3 rounds (the dialogues benchmark's settings), then the
night's summary and batches table. Two fake servers, each a subprocess answering after 100 ms: one
answers fresh numbered lists (the prompts stage's generator), one answers by what is asked
(`--preferences` mode: responses, grades, verdicts, simulated users). Each stage's requests are
read from the catalog's usage record of its run (its `openai` engines': a grade of the llm-judge
reward is a request of the served model, counted there).

ideal = the sum over the stages of requests x latency / concurrency: each stage's window of 64
perfectly packed, and nothing else. Prints each stage's time and ideal, the night's, and
`ratio=<night time/ideal>`; the target is <= 1.3. On a small machine the flow's own CPU (the
client side of 300,000 requests, the gates) is part of what the ratio measures.

Outside the clock: a warm-up flow starts the Prefect API (a temporary local server). The gate
workers start inside it, as in a deployment's run.

    python benchmarks/nightly_overhead.py [--scale 0.1]    # 1.0: about 20,000 prompts
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

from benchmarks import dialogues_stage, preferences_stage, prompts_stage  # noqa: E402
from benchmarks.preferences_stage import CONCURRENCY, LATENCY_S  # noqa: E402 - the stage benchmarks' servers and window

RUN_DATE = "2026-01-01"
STAGES = ("prompts", "preferences", "dialogues")


def night_config(lists_url: str, served_url: str, folder: Path, scale: float) -> dict:
    config = prompts_stage.stage_config(lists_url, folder, 3.6 * scale)  # 1.0: about 20,000 prompts
    preferences = preferences_stage.stage_config(served_url, folder, preferences_stage.BATCH_SIZE,
                                                 preferences_stage.BATCHES_IN_FLIGHT)
    dialogues = dialogues_stage.stage_config(served_url, folder, dialogues_stage.BATCH_SIZE,
                                             dialogues_stage.BATCHES_IN_FLIGHT)
    config["name"] = "night"
    config["models"].update(preferences["models"])  # `served` and its `grader`, beside the lists' `fake`
    config["preferences"] = preferences["preferences"]
    config["dialogues"] = dialogues["dialogues"]
    return config


async def one_night(config) -> tuple[dict, dict[str, float]]:
    """The night's summary and each stage's wall time, as the progress display measures it."""
    from flows.nightly import nightly_flow
    from flows.progress import PROGRESS

    summary = await nightly_flow(config, run_date=RUN_DATE)
    return summary, {p.stage: p.elapsed for p in PROGRESS.snapshot()}


def stage_requests(config) -> dict[str, int]:
    from storage.catalog import Catalog

    # the servers' requests: the `openai` engines' (the llm-judge reward's grades are requests of `served` too)
    rows = Catalog(config.lake).query("SELECT run_id, sum(requests)::BIGINT AS n FROM usage WHERE backend = 'openai' "
                                      "GROUP BY ALL").to_pylist()
    return {stage: sum(r["n"] for r in rows if r["run_id"] == f"{config.name}-{stage}-{RUN_DATE}") for stage in STAGES}


def main() -> None:
    from prefect import flow

    from benchmarks.servers.fake_openai import spawn_server
    from flows.config import parse_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 makes about 20,000 prompts")
    args = parser.parse_args()
    warm_up = flow(name="warm-up")(lambda: None)  # starts the Prefect API before the clock does
    lists, lists_url = spawn_server(LATENCY_S, varied=True)
    served, served_url = spawn_server(LATENCY_S, preferences=True)
    try:
        warm_up()
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config(night_config(lists_url, served_url, Path(tmp), args.scale))
            started = time.perf_counter()
            summary, stage_s = asyncio.run(one_night(config))
            elapsed = time.perf_counter() - started
            requests = stage_requests(config)
    finally:
        for server in (lists, served):
            server.terminate()
            server.wait(10)
    ideal = {stage: n * LATENCY_S / CONCURRENCY for stage, n in requests.items()}
    prompts, pairs, dialogues = summary["prompts"], summary["preferences"], summary["dialogues"]
    print(f"prompts={prompts['rows']} answered={pairs['prompts']} pairs={pairs['pairs']} "
          f"best_of_n={pairs['best_of_n']} dialogues={dialogues['dialogues']} cores={os.cpu_count()}")
    for stage in STAGES:
        print(f"{stage}: requests={requests[stage]} stage_s={stage_s[stage]:.1f} ideal_s={ideal[stage]:.1f} "
              f"stage_ratio={stage_s[stage] / ideal[stage]:.3f}")
    between = elapsed - sum(stage_s.values())
    print(f"night_s={elapsed:.1f} ideal_s={sum(ideal.values()):.1f} outside_stages_s={between:.1f}")
    print(f"ratio={elapsed / sum(ideal.values()):.3f}", flush=True)


if __name__ == "__main__":
    main()
