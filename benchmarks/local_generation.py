"""Local generation: the transformers engine against one raw batched `model.generate`.

64 chats x 64 new tokens on the embedded default model, greedy, same model object and dtype
for both; every row runs exactly 64 tokens (min = max new tokens), so the token counts match.
Prints tokens/s of both and ratio=<engine/raw> (target >= 0.9). Where a `.venv-vllm` with vllm
exists, runs benchmarks/local_generation_vllm.py with it and passes its output through.

    .venv/bin/python benchmarks/local_generation.py [--chats 64] [--tokens 64] [--rounds 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOPICS = ["rivers", "prime numbers", "the moon", "bread", "sorting a list", "volcanoes", "chess", "rain"]
ASKS = [
    "Explain {} to a child.",
    "Write two sentences about {}.",
    "What is one surprising fact about {}?",
    "Give me a short tip related to {}.",
    "Why do people care about {}? Answer briefly.",
    "Describe {} in the style of a news report.",
    "List three words that come to mind for {}.",
    "Ask me a quiz question about {}.",
]


def benchmark_chats(count: int) -> list[list[dict[str, str]]]:
    prompts = [ask.format(topic) for ask in ASKS for topic in TOPICS]
    return [[{"role": "user", "content": prompts[i % len(prompts)]}] for i in range(count)]


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


def run_raw(model, tokenizer, chats, tokens: int) -> tuple[float, int]:
    """The floor: tokenize, one left-padded batch, `generate`, decode; nothing else."""
    import torch

    started = time.perf_counter()
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in chats]
    batch = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        output = model.generate(
            **batch, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=tokenizer.pad_token_id
        )
    new_tokens = output[:, batch["input_ids"].shape[1] :]
    tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return time.perf_counter() - started, int(new_tokens.numel())


def run_vllm_benchmark(chats: int, tokens: int) -> None:
    python = ROOT / ".venv-vllm" / "bin" / "python"
    script = ROOT / "benchmarks" / "local_generation_vllm.py"
    if not (python.exists() and script.exists()):
        print("vllm: skipped (no .venv-vllm or no benchmarks/local_generation_vllm.py)")
        return
    if subprocess.run([str(python), "-c", "import vllm"], capture_output=True).returncode != 0:
        print("vllm: skipped (vllm does not import in .venv-vllm)")
        return
    print("== vllm engine vs raw LLM.chat (.venv-vllm)", flush=True)
    subprocess.run([str(python), str(script), "--chats", str(chats), "--tokens", str(tokens)], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternate engine/raw this many times; best of each")
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args()

    from engines import torch_thread
    from engines.config import ModelSpec
    from engines.transformers_chat import TransformersChatEngine

    # ignore_eos: the engine, like the raw call, runs every row to exactly --tokens tokens.
    engine = TransformersChatEngine("default", ModelSpec(batch_size=args.chats), ignore_eos=True)
    model, tokenizer = engine.load()  # the same model object for both sides
    chats = benchmark_chats(args.chats)
    # The raw side runs on the engine's torch thread too: both use the same one libgomp team
    # (see engines/torch_thread.py), so the ratio measures the engine, not the threading.
    torch_thread.run(run_raw, model, tokenizer, chats[:2], 2)  # warm-up: first-call costs out of the timings
    run_engine(engine, chats[:2], 2)

    best_engine = best_raw = float("inf")
    for _ in range(args.rounds):
        raw_s, raw_tokens = torch_thread.run(run_raw, model, tokenizer, chats, args.tokens)
        engine_s, engine_tokens = run_engine(engine, chats, args.tokens)
        assert raw_tokens == engine_tokens == args.chats * args.tokens, (raw_tokens, engine_tokens)
        best_raw, best_engine = min(best_raw, raw_s), min(best_engine, engine_s)

    total = args.chats * args.tokens
    print(f"model: {engine.model_name}, dtype {model.dtype}, device {model.device}, {args.chats} chats x {args.tokens} tokens")
    print(f"raw generate:        {best_raw:7.2f} s  {total / best_raw:7.1f} tokens/s")
    print(f"transformers engine: {best_engine:7.2f} s  {total / best_engine:7.1f} tokens/s")
    print(f"ratio={best_raw / best_engine:.3f}  (engine/raw throughput; target >= 0.9)", flush=True)
    if not args.skip_vllm:
        run_vllm_benchmark(args.chats, args.tokens)


if __name__ == "__main__":
    main()
