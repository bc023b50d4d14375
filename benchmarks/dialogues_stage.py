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
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from benchmarks.preferences_stage import CONCURRENCY, LATENCY_S, PROMPTS, timed_rounds  # noqa: E402

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


def main() -> None:
    from flows.dialogues import dialogues_flow

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help=f"fraction of {PROMPTS:,} prompts")
    parser.add_argument("--rounds", type=int, default=2, help="fresh lake each round; the best one counts")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="dialogues.batch_size")
    parser.add_argument("--in-flight", type=int, default=BATCHES_IN_FLIGHT, help="dialogues.batches_in_flight")
    args = parser.parse_args()
    count = max(1, int(PROMPTS * args.scale))
    rounds, best = timed_rounds(dialogues_flow, lambda url, folder: stage_config(url, folder, args.batch_size,
                                                                                 args.in_flight),
                                count, args.rounds)
    summary, ideal = best.summary, best.requests * LATENCY_S / CONCURRENCY
    states = sorted({b["state"] for b in summary["batches"]})
    print(f"prompts={summary['prompts']} played={summary['played']} dialogues={summary['dialogues']} "
          f"user_turns={summary['user_turns']} gate_states={states} drops={summary['drops']} "
          f"retried={summary['retried']}")
    print(f"requests={best.requests} (catalog usage, openai: {best.openai}) concurrency={CONCURRENCY} "
          f"latency_s={LATENCY_S} batch_size={args.batch_size} batches_in_flight={args.in_flight} cores={os.cpu_count()}")
    print(f"rounds_s={[round(r.elapsed, 2) for r in rounds]}")
    print(f"stage_s={best.elapsed:.2f} ideal_s={ideal:.2f} dialogues_per_s={summary['dialogues'] / best.elapsed:.1f}")
    print(best.timeline.summary(), best.window)
    print(f"ratio={best.elapsed / ideal:.3f}", flush=True)


if __name__ == "__main__":
    main()
