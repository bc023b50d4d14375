"""Near-duplicate verdicts per true Jaccard bucket: ours against datasketch's MinHashLSH, same pairs.

    python benchmarks/near_dup_curve.py [--pairs 3000] [--seed 1]

Text pairs of known 3-word-shingle Jaccard similarity are generated, as many in each bucket
(prompt-like texts of 8-100 words, half of them opening with a shared template phrase; the second
text is the first with words replaced, dropped or inserted until its similarity falls to a target
drawn in a bucket still short of pairs). Flagged shares:
- ours, against published rows: the first text of each pair is published through the real path
  (fingerprint, signature_table, write_signatures), the second is gated with
  duplicates_of_published, each pair in a scope of its own, as the gate scopes prompts;
- ours, within one batch: both texts in one batch through duplicates_within (candidates from band
  keys, then the Jaccard estimate of the full signatures is checked against the threshold);
- datasketch: MinHashLSH(threshold, num_perm, params=(bands, rows)) with the bands and rows that
  quality.dedup.lsh_bands picks, MinHash.update_batch of the same shingles.
Then the time to fingerprint texts of 12 and 40 words: the bulk path side by side with its legacy
branch (version 1, the rotation densification used before, kept to probe lakes published with it)
and with datasketch. Prints the table, max_gap=<largest |ours - datasketch| over the buckets,
against published rows> and ratio=<current / legacy fingerprint time, both lengths> (about 1:
the speed is kept).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from quality import dedup  # noqa: E402
from quality.config import GateConfig  # noqa: E402
from storage.config import LakeConfig  # noqa: E402
from storage.lake import Lake  # noqa: E402

BUCKETS = [(0.9, 1.01, ">= 0.9"), (0.8, 0.9, "0.8-0.9"), (0.7, 0.8, "0.7-0.8"), (0.5, 0.7, "0.5-0.7"), (0.0, 0.5, "< 0.5")]
TEMPLATES = ["please write a short answer to the following question about", "explain step by step how to",
             "you are a helpful assistant answer the user", "give three examples of"]


def shingles(words: list[str], size: int = 3) -> set[tuple[str, ...]]:
    return {tuple(words[i: i + size]) for i in range(len(words) - size + 1)} or {tuple(words)}


def make_pairs(count: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """(first texts, second texts, true shingle Jaccard of each pair), the same number of pairs in
    each bucket (the rest, if any, in the first); words are already normalized."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i:05d}" for i in range(20_000)])
    wanted = [count // len(BUCKETS)] * len(BUCKETS)
    wanted[0] += count - sum(wanted)
    first, second, jaccard = [], [], []
    while len(first) < count:
        words = list(vocabulary[rng.integers(0, len(vocabulary), int(np.exp(rng.uniform(np.log(8), np.log(100)))))])
        if rng.random() < 0.5:
            words = TEMPLATES[rng.integers(len(TEMPLATES))].split() + words
        # a target inside a bucket still short of pairs; a pair landing in a full bucket is dropped
        low, high, _ = BUCKETS[rng.choice([i for i, left in enumerate(wanted) if left])]
        edited, target, original = list(words), rng.uniform(max(low, 0.3), min(high, 1.0)), shingles(words)
        while True:
            # edits anywhere, a third of them at either end (one shingle lost there, not three)
            at = int(rng.integers(len(edited))) if rng.random() < 0.7 else (0 if rng.random() < 0.5 else len(edited) - 1)
            kind = rng.random()
            if kind < 0.7:
                edited[at] = str(vocabulary[rng.integers(len(vocabulary))])
            elif kind < 0.85 and len(edited) > 4:
                del edited[at]
            else:
                edited.insert(at, str(vocabulary[rng.integers(len(vocabulary))]))
            other = shingles(edited)
            similarity = len(original & other) / len(original | other)
            if similarity <= target:
                break
        bucket = next(i for i, (low, high, _) in enumerate(BUCKETS) if low <= similarity < high)
        if not wanted[bucket]:
            continue
        wanted[bucket] -= 1
        first.append(" ".join(words))
        second.append(" ".join(edited))
        jaccard.append(similarity)
    return first, second, np.array(jaccard)


def ours_against_published(first: list[str], second: list[str], config: GateConfig) -> np.ndarray:
    """Whether the gate drops each second text as a duplicate of its published first text."""
    with tempfile.TemporaryDirectory() as root:
        lake = Lake(LakeConfig(root=root))
        scopes = pa.array([f"pair-{i}" for i in range(len(first))])
        rows = np.arange(len(first))
        published = dedup.fingerprint(pa.array(first, pa.large_string()), config, scopes)
        table = dedup.signature_table(pa.array([f"published-{i}" for i in rows]), published, rows)
        dedup.write_signatures(lake, "prompts", "published", table)
        found = dedup.duplicates_of_published(lake, "prompts", "gated", dedup.fingerprint(
            pa.array(second, pa.large_string()), config, scopes), rows, config)
    flagged = np.zeros(len(first), bool)
    flagged[list(found)] = True
    return flagged


def ours_within_batch(first: list[str], second: list[str], config: GateConfig) -> np.ndarray:
    """Whether the gate drops each second text as a duplicate of its first one, both in one batch."""
    count = len(first)
    texts = pa.array(first + second, pa.large_string())
    scopes = pa.array([f"pair-{i}" for i in range(count)] * 2)
    found = dedup.duplicates_within(texts, dedup.fingerprint(texts, config, scopes), np.arange(2 * count), config)
    return np.array([found.get(count + i, (None, None))[1] == i for i in range(count)])


def datasketch_minhashes(texts: list[str], num_perm: int, shingle_words: int) -> list:
    from datasketch import MinHash

    out = []
    for text in texts:
        minhash = MinHash(num_perm=num_perm)
        minhash.update_batch([" ".join(s).encode() for s in shingles(text.split(), shingle_words)])
        out.append(minhash)
    return out


def datasketch_flags(first: list[str], second: list[str], config: GateConfig) -> np.ndarray:
    from datasketch import MinHashLSH

    bands, rows = dedup.lsh_bands(config.near_dup_threshold, config.num_perm)
    lsh = MinHashLSH(threshold=config.near_dup_threshold, num_perm=config.num_perm, params=(bands, rows))
    for i, minhash in enumerate(datasketch_minhashes(first, config.num_perm, config.shingle_words)):
        lsh.insert(str(i), minhash)
    return np.array([str(i) in lsh.query(minhash)
                     for i, minhash in enumerate(datasketch_minhashes(second, config.num_perm, config.shingle_words))])


def bucket_shares(jaccard: np.ndarray, **flags: np.ndarray) -> list[dict]:
    """Per bucket: its name, pair count and each verdict's flagged share."""
    out = []
    for low, high, name in BUCKETS:
        inside = (jaccard >= low) & (jaccard < high)
        out.append({"bucket": name, "pairs": int(inside.sum()),
                    **{key: float(value[inside].mean()) if inside.any() else float("nan") for key, value in flags.items()}})
    return out


def _best_time(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def fingerprint_speed(config: GateConfig, rows: int, words: int) -> dict[str, float]:
    """Seconds to fingerprint `rows` texts of `words` words (best of 5, the variants interleaved)."""
    from quality.minhash import fingerprint_bands

    rng = np.random.default_rng(11)
    vocabulary = np.array([f"w{i:05d}" for i in range(30_000)])
    texts = pa.array([" ".join(row) for row in vocabulary[rng.integers(0, len(vocabulary), size=(rows, words))]])
    bands, band_rows = dedup.lsh_bands(config.near_dup_threshold, config.num_perm)

    def run(legacy: bool = False, part: pa.Array = texts):
        flag = {"legacy": True} if legacy else {}  # code from before the legacy branch takes no flag
        return fingerprint_bands(part, config.num_perm, config.shingle_words, bands, band_rows, **flag)

    variants = {"current": run}
    try:
        run(True, texts.slice(0, 10))
        variants["legacy"] = lambda: run(True)
    except TypeError:  # code without the legacy scheme
        pass
    best = {name: float("inf") for name in variants}
    for _ in range(5):
        for name, function in variants.items():
            best[name] = min(best[name], _best_time(function, 1))
    subset = texts.slice(0, 2_000).to_pylist()
    best["datasketch (2,000 texts)"] = _best_time(
        lambda: datasketch_minhashes(subset, config.num_perm, config.shingle_words), 1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed-rows", type=int, default=25_000, help="texts of the fingerprinting speed test")
    args = parser.parse_args()
    config = GateConfig()
    first, second, jaccard = make_pairs(args.pairs, args.seed)
    table = bucket_shares(jaccard, published=ours_against_published(first, second, config),
                          within=ours_within_batch(first, second, config),
                          datasketch=datasketch_flags(first, second, config))
    bands, rows = dedup.lsh_bands(config.near_dup_threshold, config.num_perm)
    print(f"{args.pairs} pairs, threshold {config.near_dup_threshold}, {config.num_perm} permutations, "
          f"{bands} bands x {rows} rows, {config.shingle_words}-word shingles")
    print("| true Jaccard | pairs | ours, vs published | ours, within batch | datasketch | published - datasketch |")
    for row in table:
        print(f"| {row['bucket']} | {row['pairs']} | {row['published']:.3f} | {row['within']:.3f} | "
              f"{row['datasketch']:.3f} | {row['published'] - row['datasketch']:+.3f} |")
    totals = {"current": 0.0, "legacy": 0.0}
    for words in (12, 40):
        speed = fingerprint_speed(config, args.speed_rows, words)
        print(f"fingerprinting {args.speed_rows:,} texts of {words} words (best of 5): "
              + ", ".join(f"{name} {seconds:.3f}s" for name, seconds in speed.items()))
        for name in totals:
            totals[name] += speed.get(name, float("nan"))
    print(f"max_gap={max(abs(row['published'] - row['datasketch']) for row in table if row['pairs']):.3f}")
    print(f"ratio={totals['current'] / totals['legacy']:.2f}")


if __name__ == "__main__":
    main()
