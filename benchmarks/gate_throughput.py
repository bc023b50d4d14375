"""The full gate against a large published history, side by side with landing the same rows.

    python benchmarks/gate_throughput.py [--published 1000000] [--rows 100000] [--batch-rows 20000]

Set-up (not timed): the dataset's published history is pre-seeded as signature files only
(`<root>/signatures/dataset=preferences/*.parquet`), generated directly as random band keys and
exact hashes, because the gate reads nothing else of what was published. A few hundred of those
"published" rows get the real fingerprints of texts that the new batches then repeat (exactly or
with one word changed), so the probe has real hits to find. The new rows are preference pairs
with ~40-word prompts and ~80-word answers; some are low-reward and some repeat each other.

Timed, per batch: landing (`Lake.stage_batch`: schema check + Parquet write) and the gate
(`run_gate`: read, flatten, GE suite, reward gates, exact + near dedup within the batch and
against the published signatures, rewrite without dropped rows, signatures, publish, report,
catalog). The GE context and suite are built once per process, before timing (a warm-up gate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from quality.config import GateConfig, QualityConfig  # noqa: E402
from quality.dedup import EXACT_BAND, SIGNATURE_SCHEMA, fingerprint, lsh_bands, signature_table, signatures_dir  # noqa: E402
from quality.gate import run_gate  # noqa: E402
from storage.catalog import Catalog  # noqa: E402
from storage.config import LakeConfig  # noqa: E402
from storage.lake import Lake  # noqa: E402
from storage.schemas import HELPSTEER2_ATTRIBUTES, SCHEMAS  # noqa: E402

RUN_DATE = "2026-11-22"
VOCABULARY = np.array([f"w{i:05d}" for i in range(30_000)])


def texts(rng: np.random.Generator, count: int, words: int) -> list[str]:
    picks = VOCABULARY[rng.integers(0, len(VOCABULARY), size=(count, words))]
    return [" ".join(row) for row in picks]


def conversation(role: str, contents: list[str]) -> pa.Array:
    messages = pa.StructArray.from_arrays(
        [pa.array([role] * len(contents)), pa.array(contents)], fields=list(SCHEMAS["preferences"].field("prompt").type.value_type))
    return pa.ListArray.from_arrays(pa.array(np.arange(len(contents) + 1, dtype=np.int32)), messages)


def preference_batch(rng: np.random.Generator, prompts: list[str], batch: str) -> pa.Table:
    count = len(prompts)
    schema = SCHEMAS["preferences"]
    scores = {a: pa.array(rng.uniform(2.5, 4.0, count)) for a in HELPSTEER2_ATTRIBUTES}
    low = {a: pa.array(rng.uniform(0.0, 2.0, count)) for a in HELPSTEER2_ATTRIBUTES}
    chosen_reward = rng.uniform(2.5, 4.0, count)
    chosen_reward[rng.random(count) < 0.02] = 0.5  # a few low-reward rows for the reward gate
    columns = {
        "id": pa.array([f"{batch}-{i}" for i in range(count)]), "prompt_id": pa.nulls(count, pa.string()),
        "prompt": conversation("user", prompts), "chosen": conversation("assistant", texts(rng, count, 80)),
        "rejected": conversation("assistant", texts(rng, count, 80)), "judge": pa.array(["reward_model"] * count),
        "chosen_reward": pa.array(chosen_reward), "rejected_reward": pa.array(rng.uniform(0.0, 2.0, count)),
        "chosen_attributes": pa.StructArray.from_arrays(list(scores.values()), names=list(scores)),
        "rejected_attributes": pa.StructArray.from_arrays(list(low.values()), names=list(low)),
        "margin": pa.array(rng.uniform(1.0, 3.0, count)), "run_id": pa.array(["bench"] * count),
        "batch_id": pa.array([batch] * count), "stage": pa.array(["bench"] * count),
        "created_at": pa.array([dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)] * count, pa.timestamp("us", tz="UTC")),
    }
    arrays = [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(count, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def seed_published(lake: Lake, rows: int, planted: list[str], config: GateConfig, files: int = 20) -> None:
    """Random signatures for `rows` published rows, plus the real ones of the planted texts."""
    bands, _ = lsh_bands(config.near_dup_threshold, config.num_perm)
    rng = np.random.default_rng(7)
    folder = signatures_dir(lake, "preferences")
    os.makedirs(folder, exist_ok=True)
    real = signature_table(pa.array([f"published-planted-{i}" for i in range(len(planted))]),
                           fingerprint(pa.array(planted, pa.large_string()), config), np.arange(len(planted)))
    per_file = -(-rows // files)
    for index, start in enumerate(range(0, rows, per_file)):
        count = min(per_file, rows - start)
        ids = np.repeat(np.array([f"published-{start + i}" for i in range(count)]), bands + 1)
        band = np.tile(np.arange(EXACT_BAND, bands, dtype=np.int16), count)
        key = rng.integers(-(1 << 63), (1 << 63) - 1, size=count * (bands + 1), dtype=np.int64)
        table = pa.table({"id": ids, "band": band, "key": key}, schema=SIGNATURE_SCHEMA)
        if index == 0:
            table = pa.concat_tables([table, real])
        table = table.take(pc.sort_indices(table, [("key", "ascending")]))  # sorted by key, as the gate writes them
        pq.write_table(table, f"{folder}/seeded-{index:03d}.parquet", compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=int, default=1_000_000, help="rows already published (as signatures)")
    parser.add_argument("--rows", type=int, default=100_000, help="new rows, over all batches")
    parser.add_argument("--batch-rows", type=int, default=25_000, help="rows per batch")
    parser.add_argument("--keep", action="store_true", help="keep the temporary lake")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="sdg-gate-bench-")
    config = GateConfig()
    rng = np.random.default_rng(11)
    lake_config = LakeConfig(root=f"{root}/lake")
    lake = Lake(lake_config)
    catalog = Catalog(lake_config, lake)
    # prompts of the new batches; 1% repeat a published text exactly, 1% with one word changed
    prompts = texts(rng, args.rows, 40)
    planted = texts(rng, 2 * max(1, args.rows // 100), 40)
    for i, text in enumerate(planted[::2]):
        prompts[i * 100 % args.rows] = text
    for i, text in enumerate(planted[1::2]):
        prompts[(i * 100 + 50) % args.rows] = " ".join(text.split()[:-1] + ["changed"])
    for i in range(0, args.rows - 1, 200):  # 0.5% repeat a row of their own batch
        prompts[i + 1] = prompts[i]
    seed_published(lake, args.published, planted, config)

    warm = Lake(LakeConfig(root=f"{root}/warm"))  # builds the GE context and suite before timing
    run_gate(warm, None, warm.stage_batch("preferences", RUN_DATE, "warm", preference_batch(rng, texts(rng, 50, 40), "warm")),
             QualityConfig(preferences=config), "bench")

    batches = [preference_batch(rng, prompts[s: s + args.batch_rows], f"bench-{s // args.batch_rows:04d}")
               for s in range(0, args.rows, args.batch_rows)]
    landing, gating = [], []  # seconds per batch
    published = 0
    drops: dict[str, int] = {}
    for table in batches:
        batch = table.column("batch_id")[0].as_py()
        start = time.perf_counter()
        staged = lake.stage_batch("preferences", RUN_DATE, batch, table)
        landing.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = run_gate(lake, catalog, staged, QualityConfig(preferences=config), "bench")
        gating.append(time.perf_counter() - start)
        published += report.rows_out
        for reason, count in report.drops.items():
            drops[reason] = drops.get(reason, 0) + count
        print(f"{batch}: {report.state}, {report.rows_out}/{report.rows_in} rows, land {landing[-1]:.2f}s, "
              f"gate {gating[-1]:.2f}s; steps {report.timings}")
    print(f"published history: {args.published:,} rows (as signatures); new rows: {args.rows:,} in {len(batches)} batches")
    print(f"published {published:,} rows; drops: {drops}")
    print(f"landing: {sum(landing):.2f}s ({args.rows / sum(landing):,.0f} rows/s)")
    print(f"gate:    {sum(gating):.2f}s ({args.rows / sum(gating):,.0f} rows/s), the first batch loads the published-key index")
    if len(batches) > 1:
        print(f"steady state (batches after the first): ratio {sum(gating[1:]) / sum(landing[1:]):.2f}")
    print(f"ratio={sum(gating) / sum(landing):.2f}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"lake kept at {root}")


if __name__ == "__main__":
    main()
