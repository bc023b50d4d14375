"""The logprob judge: batched against one at a time, and the engine against raw forward passes.

On the embedded default model, same model object and dtype for all sides, all on the torch
thread. Prints replies scored per second of:
- the engine scoring all replies in one call (batched) and one reply per call (single):
  ratio=<batched/single> (target >= 4);
- the raw passes batched against the raw passes one reply at a time: the most batching can
  give on this device, the ceiling of the first ratio;
- the engine against the floor for the same inputs: the same forward passes (prefix with
  cache, five rubric questions, unconditional) called raw on pre-encoded, pre-sorted chunks
  with no prompt building, signals or results: ratio=<engine/raw> (target >= 0.9).

    .venv/bin/python benchmarks/logprob_judge.py [--replies 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.local_generation import benchmark_chats  # noqa: E402

REPLY = "Here is a short answer about it: it is a common topic, and {} is worth a look for anyone curious."


def conversations(count: int):
    chats = benchmark_chats(count)
    return [c + [{"role": "assistant", "content": REPLY.format(c[0]["content"].split()[-1])}] for c in chats]


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=64)
    parser.add_argument("--single", type=int, default=16, help="replies scored one per call (rate extrapolated)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from engines import torch_thread
    from engines.config import ModelSpec
    from engines.logprob_judge import LogprobJudgeRewardEngine
    from engines.logprob_transformers import read_chunk
    from engines.types import score_sync

    engine = LogprobJudgeRewardEngine("lp", ModelSpec(kind="reward", backend="logprob", batch_size=args.replies))
    reader = engine.reader
    model, tokenizer = reader.chat.load()
    convs = conversations(args.replies)
    encoder = torch_thread.run(reader.encoder, lane=reader.lane)
    encoded = sorted((encoder.encode(c) for c in convs), key=lambda e: len(e.prefix_ids))
    pad = tokenizer.pad_token_id

    def raw():
        for start in range(0, len(encoded), args.replies):
            read_chunk(model, pad, encoder.digits, encoded[start : start + args.replies])

    def raw_single():  # the floor of one reply per call: the same passes, no engine around them
        for item in encoded[: args.single]:
            read_chunk(model, pad, encoder.digits, [item])

    def batched():
        results = score_sync(engine, convs)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]

    def single():
        for c in convs[: args.single]:
            assert score_sync(engine, [c])[0].ok

    score_sync(engine, convs[:2])  # warm-up: first-call costs out of the timings
    best = {"raw": float("inf"), "raw_single": float("inf"), "batched": float("inf"), "single": float("inf")}
    for _ in range(args.rounds):
        best["raw"] = min(best["raw"], torch_thread.run(timed, raw, lane=reader.lane))
        best["raw_single"] = min(best["raw_single"], torch_thread.run(timed, raw_single, lane=reader.lane))
        best["batched"] = min(best["batched"], timed(batched))
        best["single"] = min(best["single"], timed(single))
    rate = {"raw": args.replies / best["raw"], "raw_single": args.single / best["raw_single"],
            "batched": args.replies / best["batched"], "single": args.single / best["single"]}
    print(f"model: {engine.model_name}, dtype {model.dtype}, device {model.device}, {args.replies} replies")
    for name in ("raw", "raw_single", "batched", "single"):
        print(f"{name:10s} {rate[name]:7.2f} replies/s")
    # what batching can give at all on this device: raw forward passes, batched against one per call
    print(f"raw_batched/raw_single={rate['raw'] / rate['raw_single']:.3f}  (the ceiling of batched/single here)")
    print(f"ratio={rate['batched'] / rate['single']:.3f}  (batched/single replies per second; target >= 4)")
    print(f"ratio={rate['batched'] / rate['raw']:.3f}  (engine/raw throughput; target >= 0.9)", flush=True)


if __name__ == "__main__":
    main()
