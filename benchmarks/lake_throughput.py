"""Lake throughput: land, publish and catalog N synthetic preference rows in batches, against one
raw polars.write_parquet of the same rows, measured side by side in one run.

    python benchmarks/lake_throughput.py [--rows 1000000] [--batch 1000]

Prints rows/s for both and ratio=<ours/raw> (target >= 0.5). Ours includes: schema check of
every batch, a Parquet object per batch in staging, the atomic publish, the catalog rows of every
batch (one transaction) and a view refresh at the end. Also prints what creating a file cost in
the scratch folder at the start and the end: on these machines that cost moves the ratio (see
spread_subfolders; --no-spread measures a folder left as it is).
"""

from __future__ import annotations

import argparse
import os
import datetime as dt
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa

from storage.catalog import Catalog
from storage.config import LakeConfig
from storage.lake import Lake, batch_id
from storage.schemas import HELPSTEER2_ATTRIBUTES, SCHEMAS


def synthetic_preferences(rows: int) -> pa.Table:
    """Rows with the real schema: conversations as structs, attributes, lineage."""
    i = pl.int_range(0, rows, eager=True)
    text = lambda prefix: (pl.lit(prefix) + i.cast(pl.String) + pl.lit(" lorem ipsum dolor sit amet"))  # noqa: E731
    turn = lambda role, prefix: pl.concat_list(pl.struct(pl.lit(role).alias("role"), text(prefix).alias("content")))  # noqa: E731
    attributes = pl.struct(*[(i % 5).cast(pl.Float64).alias(a) for a in HELPSTEER2_ATTRIBUTES])
    frame = pl.select(
        id=pl.lit("pair-") + i.cast(pl.String), prompt_id=pl.lit("prompt-") + i.cast(pl.String),
        prompt=turn("user", "question "), chosen=turn("assistant", "good answer "),
        rejected=turn("assistant", "bad answer "), judge=pl.lit("reward_model"),
        chosen_reward=(i % 7).cast(pl.Float64), rejected_reward=(i % 3).cast(pl.Float64),
        chosen_attributes=attributes, rejected_attributes=attributes, margin=pl.lit(1.5),
        chosen_model=pl.lit("gen-a"), rejected_model=pl.lit("gen-b"), run_id=pl.lit("bench"),
        batch_id=pl.lit("b"), stage=pl.lit("preferences"), model=pl.lit("gen-a"), backend=pl.lit("vllm"),
        sampling=pl.struct(temperature=pl.lit(0.7), top_p=pl.lit(0.9), max_tokens=pl.lit(512, pl.Int32),
                           seed=i.cast(pl.Int64)),
        template_id=pl.lit("pref"), template_version=pl.lit("1"), seed=pl.lit(0, pl.Int64),
        created_at=pl.lit(dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)).dt.cast_time_unit("us"),
    )
    return frame.to_arrow().cast(SCHEMAS["preferences"])


def raw_write(table: pa.Table, folder: Path) -> float:
    frame = pl.from_arrow(table)
    start = time.perf_counter()
    frame.write_parquet(folder / "raw.parquet")
    return time.perf_counter() - start


def lake_write(table: pa.Table, folder: Path, batch_rows: int, workers: int) -> float:
    config = LakeConfig(root=str(folder / "lake"))
    start = time.perf_counter()
    lake = Lake(config)
    catalog = Catalog(config, lake)

    def land(shard: int) -> tuple:
        bid = batch_id("bench", "preferences", shard, "fp")
        staged = lake.stage_batch("preferences", "2025-01-02", bid, table.slice(shard * batch_rows, batch_rows))
        return (staged, "published", "bench", lake.publish(staged))

    # Batches land from one thread per core (the lake takes concurrent landings: each batch is
    # its own object); the raw baseline uses every core too (polars writes with a thread pool).
    shards = range(-(-table.num_rows // batch_rows))
    with ThreadPoolExecutor(workers) as pool:
        records = list(pool.map(land, shards))
    with catalog.writing():  # one lock, one connection, one transaction for every catalog row
        catalog.record_run("bench", "lake_throughput", "fp")
        catalog.record_batches(records)
        catalog.finish_run("bench")
        catalog.refresh_views()
    seconds = time.perf_counter() - start
    landed = catalog.query("SELECT count(*) AS n FROM preferences").column("n")[0].as_py()
    assert landed == table.num_rows, f"landed {landed} of {table.num_rows} rows"
    return seconds


def subfolder(folder: Path, name: str) -> Path:
    # A random suffix: under a +T folder, ext4 picks a subfolder's block group from a hash of its
    # name, so fixed names would land every run in the groups the previous run just emptied.
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=folder))


def file_creation_ms(folder: Path, files: int = 200) -> float:
    """What creating one small file costs in this folder now: the lake creates one per batch."""
    start = time.perf_counter()
    for i in range(files):
        (folder / f"f{i}").write_bytes(b"x")
    return (time.perf_counter() - start) / files * 1000


def spread_subfolders(folder: Path) -> bool:
    """Mark folder as the top of a directory tree for ext4's allocator (chattr +T).

    Its subfolders, and so the files in them, then go to block groups of their own. These
    machines' ext4 has no journal, and there creating a file scans the inodes that others freed in
    the same block group in the last minutes (the kernel's recently_deleted(); 0.2-0.9 ms a file
    after a test suite or a previous run, against 0.05 ms). That is other processes' doing, not a
    cost of the lake, and it would swamp the comparison: the lake creates one file per batch, the
    raw write one in all. Returns False where the flag is not supported (other filesystems).
    """
    try:
        return subprocess.run(["chattr", "+T", str(folder)], capture_output=True).returncode == 0
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads landing batches")
    parser.add_argument("--repeats", type=int, default=5, help="alternate raw/ours this many times; best of each")
    parser.add_argument("--dir", default=None, help="folder both write into (default: the system's temporary folder)")
    parser.add_argument("--no-spread", action="store_true",
                        help="leave the scratch folder as it is (see spread_subfolders): what a churned filesystem costs")
    args = parser.parse_args()
    table = synthetic_preferences(args.rows)
    folder = Path(tempfile.mkdtemp(prefix="sdg-bench-", dir=args.dir))
    raw_times, ours_times = [], []
    try:
        spread = not args.no_spread and spread_subfolders(folder)
        before_ms = file_creation_ms(subfolder(folder, "probe-start"))
        # Alternate the two and keep each one's best: the box is shared, so load comes and goes.
        # Nothing is deleted until the end (deletions slow file creation here: see above).
        for attempt in range(args.repeats):
            # Each starts with no dirty pages of the other's to write back.
            os.sync()
            raw_times.append(raw_write(table, subfolder(folder, f"raw{attempt}")))
            os.sync()
            ours_times.append(lake_write(table, subfolder(folder, f"ours{attempt}"), args.batch, args.workers))
        creation_ms = file_creation_ms(subfolder(folder, "probe-end"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    raw_s, ours_s = min(raw_times), min(ours_times)
    raw_rate, ours_rate = args.rows / raw_s, args.rows / ours_s
    print(f"rows={args.rows} batch={args.batch} workers={args.workers} batches={-(-args.rows // args.batch)} "
          f"dir={folder.parent}")
    print(f"file creation: {before_ms:.3f} ms at the start, {creation_ms:.3f} ms at the end "
          f"(subfolders spread over block groups: {'yes' if spread else 'no'})")
    print(f"attempts (s): raw {' '.join(f'{t:.2f}' for t in raw_times)}; ours {' '.join(f'{t:.2f}' for t in ours_times)}")
    print(f"raw polars.write_parquet: {raw_s:.2f}s  {raw_rate:,.0f} rows/s")
    print(f"lake land+publish+catalog: {ours_s:.2f}s  {ours_rate:,.0f} rows/s")
    print(f"ratio={ours_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
