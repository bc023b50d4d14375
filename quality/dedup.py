"""Exact and near-duplicate removal, within a batch and against what a dataset already published.

Published fingerprints live in the lake, one Parquet per published batch:
    <root>/signatures/dataset=<name>/<batch_id>.parquet   columns (id, band, key)
band -1 holds the exact hash of the normalized text; bands 0..b-1 hold MinHash LSH band keys.
Probing is one DuckDB hash join of the new batch's keys against those files, so a million
published rows cost a scan of int64 columns, never a million MinHash objects in memory.

Against published rows, an LSH band match is the verdict (as datasketch's MinHashLSH.query
returns candidates unverified): full signatures are not kept, only band keys. Within a batch the
full signatures of candidate pairs are recomputed and the Jaccard estimate is checked.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quality.config import GateConfig
from quality.minhash import fingerprint_bands, fingerprints, normalize_text  # noqa: F401 (re-exported)
from storage.lake import Lake, check_batch_id
from storage.schemas import check_dataset_name

EXACT_BAND = -1
SIGNATURE_SCHEMA = pa.schema([("id", pa.string()), ("band", pa.int16()), ("key", pa.int64())])

# Values are bound; the file list is a bound list parameter.
PROBE_PUBLISHED = """
SELECT n.row, bool_or(n.band = -1) AS exact, min(p.id) AS published_id
FROM new_keys AS n JOIN read_parquet(?) AS p ON p.key = n.key AND p.band = n.band
GROUP BY n.row
"""


@functools.lru_cache(maxsize=None)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's optimizer picks for this Jaccard threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


@dataclass(frozen=True)
class Fingerprints:
    exact: np.ndarray  # (n,) int64 hash of the normalized text
    bands: np.ndarray  # (n, b) int64 LSH band keys
    empty: np.ndarray  # (n,) bool: no words, so no near-duplicate test


def fingerprint(texts: pa.Array, config: GateConfig) -> Fingerprints:
    bands, rows = lsh_bands(config.near_dup_threshold, config.num_perm)
    exact, keys, empty = fingerprint_bands(texts, config.num_perm, config.shingle_words, bands, rows)
    return Fingerprints(exact, keys, empty)


def duplicates_within(texts: pa.Array, prints: Fingerprints, rows: np.ndarray, config: GateConfig) -> dict[int, tuple[str, int]]:
    """{row: (reason, earlier row it duplicates)} among `rows` (in order); the first of a group stays."""
    found: dict[int, tuple[str, int]] = {}
    if not len(rows):
        return found
    if config.exact_dedup:
        frame = pd.DataFrame({"row": rows, "hash": prints.exact[rows]})
        first = frame.groupby("hash")["row"].transform("min")
        for row, original in zip(frame["row"], first):
            if row != original:
                found[int(row)] = ("exact_duplicate", int(original))
    if not config.near_dedup:
        return found
    left = np.array([r for r in rows if r not in found and not prints.empty[r]], dtype=np.int64)
    pairs = set()
    for band in range(prints.bands.shape[1]):
        frame = pd.DataFrame({"row": left, "key": prints.bands[left, band]})
        first = frame.groupby("key")["row"].transform("min").to_numpy()
        pairs.update((int(a), int(b)) for a, b in zip(first, frame["row"]) if a != b)
    if not pairs:
        return found
    involved = sorted({r for pair in pairs for r in pair})
    _, signatures = fingerprints(texts.take(pa.array(involved)), config.num_perm, config.shingle_words)
    position = {row: i for i, row in enumerate(involved)}
    for earlier, later in sorted(pairs, key=lambda p: (p[1], p[0])):
        if later in found or earlier in found:
            continue  # keep the first of a cluster; a dropped row does not knock out others
        similarity = float((signatures[position[earlier]] == signatures[position[later]]).mean())
        if similarity >= config.near_dup_threshold:
            found[later] = ("near_duplicate", earlier)
    return found


def signature_table(ids: pa.Array, prints: Fingerprints, rows: np.ndarray) -> pa.Table:
    """Long (id, band, key) rows for the given batch rows: the exact hash plus each LSH band key."""
    count, bands = len(rows), prints.bands.shape[1]
    near = rows[~prints.empty[rows]]
    row_index = np.concatenate([rows, np.repeat(near, bands)])
    band = np.concatenate([np.full(count, EXACT_BAND), np.tile(np.arange(bands), len(near))]).astype(np.int16)
    key = np.concatenate([prints.exact[rows], prints.bands[near].reshape(-1)])
    order = np.argsort(row_index, kind="stable")  # one id's keys together: ids compress to runs
    return pa.table({"id": ids.take(pa.array(row_index[order])).cast(pa.string()),
                     "band": pa.array(band[order]), "key": pa.array(key[order])}, schema=SIGNATURE_SCHEMA)


def signatures_dir(lake: Lake, dataset: str) -> str:
    return f"{lake.root}/signatures/dataset={check_dataset_name(dataset)}"


def write_signatures(lake: Lake, dataset: str, batch: str, table: pa.Table) -> str:
    """Keep a published batch's fingerprints beside the lake (overwrites a re-landing's)."""
    path = f"{signatures_dir(lake, dataset)}/{check_batch_id(batch)}.parquet"
    if lake.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = f"{os.path.dirname(path)}/.{batch}.{os.getpid()}.tmp"
        pq.write_table(table, temp, compression="zstd")
        os.replace(temp, path)  # readers never see half a signature file
    else:
        with lake.fs.open(path, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
    return lake.url(path)


def remove_signatures(lake: Lake, dataset: str, batch: str) -> None:
    path = f"{signatures_dir(lake, dataset)}/{check_batch_id(batch)}.parquet"
    if lake.fs.exists(path):
        lake.fs.rm(path)


def published_signature_files(lake: Lake, dataset: str, exclude_batch: str | None = None) -> list[str]:
    """Signature files of published batches, except the batch being gated (a rerun is not its own dup)."""
    if not lake.is_local:
        lake.fs.invalidate_cache()
    paths = sorted(lake.fs.glob(f"{signatures_dir(lake, dataset)}/*.parquet"))
    skip = f"/{exclude_batch}.parquet" if exclude_batch else None
    return [lake.url(p) for p in paths if not (skip and p.endswith(skip))]


def _probe_keys(prints: Fingerprints, rows: np.ndarray, config: GateConfig) -> pa.Table:
    """(row, band, key) of the batch rows to look up: exact hashes and/or LSH band keys."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if config.exact_dedup:
        parts.append((rows, np.full(len(rows), EXACT_BAND), prints.exact[rows]))
    if config.near_dedup:
        near, bands = rows[~prints.empty[rows]], prints.bands.shape[1]
        parts.append((np.repeat(near, bands), np.tile(np.arange(bands), len(near)), prints.bands[near].reshape(-1)))
    row, band, key = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(3))
    return pa.table({"row": pa.array(row, pa.int64()), "band": pa.array(band, pa.int16()), "key": pa.array(key, pa.int64())})


def duplicates_of_published(lake: Lake, dataset: str, batch: str, prints: Fingerprints, rows: np.ndarray,
                            config: GateConfig) -> dict[int, tuple[str, str]]:
    """{row: (reason, published id)} for rows whose exact hash or any LSH band key was published before."""
    files = published_signature_files(lake, dataset, exclude_batch=batch)
    if not files or not len(rows):
        return {}
    new_keys = _probe_keys(prints, rows, config)
    conn = duckdb.connect()
    try:
        if not lake.is_local:
            conn.register_filesystem(lake.fs)
        conn.register("new_keys", new_keys)
        matches = conn.execute(PROBE_PUBLISHED, [files]).fetchall()
    finally:
        conn.close()
    return {int(row): ("exact_duplicate_of_published" if exact else "near_duplicate_of_published", published)
            for row, exact, published in matches}
