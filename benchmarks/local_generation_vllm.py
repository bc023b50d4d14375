"""Local generation on vLLM: the vllm engine against one raw `LLM.chat` of the same chats.

Run with the interpreter of .venv-vllm (vLLM's CPU build; benchmarks/local_generation.py calls
it when that environment exists):

    .venv-vllm/bin/python benchmarks/local_generation_vllm.py [--chats 64] [--tokens 64] [--rounds 2]

The embedded default model is loaded once, by the engine; the raw side calls `LLM.chat` on the
engine's own `LLM` (`engine.llm`), so both sides share weights, KV cache and compiled graphs and
only the engine's own work differs (vLLM holds one model per process comfortably, not two).
Greedy, ignore_eos: every row runs to exactly --tokens tokens on both sides. The two sides
alternate for --rounds rounds; the best time of each is kept. Prints tokens/s of both and
ratio=<engine/raw> throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# On the CPU build this is the share of the NUMA node's memory for the KV cache (~9 GiB here).
MEMORY_SHARE = 0.3


def run_raw(llm, chats, tokens: int) -> tuple[float, int]:
    """The floor: one LLM.chat over the whole batch with one SamplingParams, nothing else."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    started = time.perf_counter()
    outputs = llm.chat(chats, params, use_tqdm=False)
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(c.token_ids) for out in outputs for c in out.outputs)


def run_engine(engine, chats, tokens: int) -> tuple[float, int]:
    from engines.types import ChatRequest, chat_sync

    requests = [ChatRequest(messages=m, temperature=0.0, max_tokens=tokens) for m in chats]
    started = time.perf_counter()
    results = chat_sync(engine, requests)
    elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"engine failed {len(failed)} requests: {failed[0]}")
    return elapsed, sum(r.completion_tokens for r in results)


def main() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        # `make bench` runs every script with the main .venv; local_generation.py already runs
        # this one with .venv-vllm's interpreter, so say so here instead of failing or repeating.
        print("vllm is not importable here: run with .venv-vllm/bin/python (local_generation.py does)")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternate raw/engine this many times; best of each")
    args = parser.parse_args()

    from engines.config import ModelSpec
    from engines.embedded import embedded_model_dir
    from engines.vllm_engine import VLLMChatEngine
    from local_generation import benchmark_chats  # the same chats as the transformers benchmark

    spec = ModelSpec(backend="vllm", model=str(embedded_model_dir()), gpu_memory_utilization=MEMORY_SHARE)
    started = time.perf_counter()
    engine = VLLMChatEngine("default", spec, ignore_eos=True)
    load_s = time.perf_counter() - started
    llm = engine.llm
    chats = benchmark_chats(args.chats)
    run_raw(llm, chats[:2], 2)  # warm-up: first-call costs out of the timings
    run_engine(engine, chats[:2], 2)

    best_raw = best_engine = float("inf")
    for _ in range(args.rounds):
        raw_s, raw_tokens = run_raw(llm, chats, args.tokens)
        engine_s, engine_tokens = run_engine(engine, chats, args.tokens)
        assert raw_tokens == engine_tokens == args.chats * args.tokens, (raw_tokens, engine_tokens)
        best_raw, best_engine = min(best_raw, raw_s), min(best_engine, engine_s)

    import vllm

    total = args.chats * args.tokens
    dtype = llm.llm_engine.model_config.dtype
    print(f"model: {spec.model} (vllm {vllm.__version__}, {dtype}, loaded in {load_s:.0f} s)")
    print(f"{args.chats} chats x {args.tokens} tokens, greedy, one shared LLM, best of {args.rounds} rounds")
    print(f"raw LLM.chat: {best_raw:7.2f} s  {total / best_raw:7.1f} tokens/s")
    print(f"vllm engine:  {best_engine:7.2f} s  {total / best_engine:7.1f} tokens/s")
    print(f"ratio={best_raw / best_engine:.3f}  (engine/raw throughput)", flush=True)
    asyncio.run(engine.aclose())


if __name__ == "__main__":
    main()
