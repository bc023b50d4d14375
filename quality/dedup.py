"""Exact and near-duplicate removal, within a batch and against what a dataset already published.

Published fingerprints live in the lake, one Parquet per published batch:
    <root>/signatures/dataset=<name>/<batch_id>.parquet   columns (id, band, key)
band -1 holds the exact hash of the normalized text; bands 0..b-1 hold MinHash LSH band keys.
Probing looks the new batch's keys up in a sorted int64 index of those files, built once per
process and topped up as batches publish (quality.signature_index); past its memory cap it is one
DuckDB hash join streamed over the files. Never a million MinHash objects in memory.

Against published rows, an LSH band match is the verdict (as datasketch's MinHashLSH.query
returns candidates unverified): full signatures are not kept, only band keys. The band keys follow
datasketch's curve 1 - (1 - J**r)**b per Jaccard bucket within a few points (quality.minhash,
benchmarks/near_dup_curve.py). Within a batch the full signatures of candidate pairs are
recomputed and the Jaccard estimate is checked.

Each signature file names its MinHash scheme in its Parquet metadata (SIGNATURE_VERSION_KEY).
Files without it were written by the version 1 scheme (rotation densification): while a dataset
has any, the batch is also probed with version 1 band keys, so its older rows keep their
near-duplicate protection (with version 1's over-eager verdict against those rows). Exact hashes
did not change.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quality.config import GateConfig
from quality.minhash import SIGNATURE_VERSION, fingerprint_bands, fingerprints, mix64, normalize_text  # noqa: F401
from quality.signature_index import SIGNATURE_VERSION_KEY, index_for, legacy_files
from storage.lake import Lake, check_batch_id
from storage.schemas import check_dataset_name

EXACT_BAND = -1
SIGNATURE_SCHEMA = pa.schema([("id", pa.string()), ("band", pa.int16()), ("key", pa.int64())],
                             metadata={SIGNATURE_VERSION_KEY: str(SIGNATURE_VERSION).encode()})

# Values are bound; the file list is a bound list parameter.
PROBE_PUBLISHED = """
SELECT n.row, n.band, min(p.id) AS id
FROM new_keys AS n JOIN read_parquet(?) AS p ON p.key = n.key AND p.band = n.band
GROUP BY n.row, n.band
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
    # version 1 band keys, computed only when a dataset still has signature files of that scheme
    legacy_bands: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)


def fingerprint(texts: pa.Array, config: GateConfig, scopes: pa.Array | None = None) -> Fingerprints:
    """Fingerprints of `texts`; with `scopes` (one label per row), rows only match rows of their own label.

    The label is mixed into every hash and band key with a stable salt, so the scoping holds for
    signatures already published too (they were salted the same way).
    """
    bands, rows = lsh_bands(config.near_dup_threshold, config.num_perm)
    exact, keys, empty = fingerprint_bands(texts, config.num_perm, config.shingle_words, bands, rows)
    salt = scope_salts(scopes) if scopes is not None and len(texts) else None
    if salt is not None:
        exact = mix64((exact.view(np.uint64) ^ salt)).view(np.int64)
        keys = _salted(keys, salt)

    @functools.cache
    def legacy_bands() -> np.ndarray:
        _, old, _ = fingerprint_bands(texts, config.num_perm, config.shingle_words, bands, rows, legacy=True)
        return old if salt is None else _salted(old, salt)

    return Fingerprints(exact, keys, empty, legacy_bands)


def _salted(keys: np.ndarray, salt: np.ndarray) -> np.ndarray:
    return mix64((keys.view(np.uint64) ^ salt[:, None])).view(np.int64)


def scope_salts(scopes: pa.Array) -> np.ndarray:
    """A stable 64-bit salt per row from its scope label (a null label is a scope of its own)."""
    encoded = pc.dictionary_encode(scopes.cast(pa.string()).fill_null("\x00null"))
    labels = encoded.dictionary.to_pylist()
    salts = np.array([int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "little")
                      for label in labels], dtype=np.uint64)
    return salts[encoded.indices.to_numpy(zero_copy_only=False)]


def duplicates_within(texts: pa.Array, prints: Fingerprints, rows: np.ndarray, config: GateConfig) -> dict[int, tuple[str, int]]:
    """{row: (reason, earlier row it duplicates)} among `rows` (in order); the first of a group stays."""
    found: dict[int, tuple[str, int]] = {}
    if not len(rows):
        return found
    if config.exact_dedup:
        frame = pd.DataFrame({"row": rows, "hash": prints.exact[rows]})
        frame["first"] = frame.groupby("hash")["row"].transform("min")
        repeats = frame[frame["first"] != frame["row"]]
        found.update((row, ("exact_duplicate", first)) for row, first in zip(repeats["row"].tolist(), repeats["first"].tolist()))
    if not config.near_dedup:
        return found
    left = rows[~np.isin(rows, np.fromiter(found, dtype=np.int64, count=len(found)))]
    left = left[~prints.empty[left]]
    bands = prints.bands.shape[1]
    # band keys mix in their band number, so one grouping over every (row, key) finds each bucket's first row
    frame = pd.DataFrame({"row": np.repeat(left, bands), "key": prints.bands[left].reshape(-1)})
    frame["first"] = frame.groupby("key")["row"].transform("min")
    frame = frame[frame["first"] != frame["row"]]
    pairs = set(zip(frame["first"].tolist(), frame["row"].tolist()))
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
    # Sorted by key: the index of published keys (quality.signature_index) then merges sorted runs,
    # several times faster than sorting millions of random keys.
    order = np.argsort(key, kind="stable")
    return pa.table({"id": ids.take(pa.array(row_index[order])).cast(pa.string()),
                     "band": pa.array(band[order]), "key": pa.array(key[order])}, schema=SIGNATURE_SCHEMA)


def signatures_dir(lake: Lake, dataset: str) -> str:
    return f"{lake.root}/signatures/dataset={check_dataset_name(dataset)}"


def write_signatures(lake: Lake, dataset: str, batch: str, table: pa.Table) -> str:
    """Keep a published batch's fingerprints beside the lake (overwrites a re-landing's)."""
    path = f"{signatures_dir(lake, dataset)}/{check_batch_id(batch)}.parquet"
    table = table.replace_schema_metadata(SIGNATURE_SCHEMA.metadata)  # fingerprint() writes current keys
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


def published_signature_files(lake: Lake, dataset: str) -> list[str]:
    """Signature files of published batches (the gate skips the one of the batch it gates: a rerun
    is not its own duplicate)."""
    if not lake.is_local:
        lake.fs.invalidate_cache()
    return [lake.url(p) for p in sorted(lake.fs.glob(f"{signatures_dir(lake, dataset)}/*.parquet"))]


def _probe_keys(prints: Fingerprints, rows: np.ndarray, config: GateConfig, legacy: bool = False) -> pa.Table:
    """(row, band, key) of the batch rows to look up: exact hashes and/or LSH band keys (with
    `legacy`, version 1 band keys too: they only ever match files of that scheme)."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if config.exact_dedup:
        parts.append((rows, np.full(len(rows), EXACT_BAND), prints.exact[rows]))
    if config.near_dedup:
        near, bands = rows[~prints.empty[rows]], prints.bands.shape[1]
        for keys in [prints.bands] + ([prints.legacy_bands()] if legacy and prints.legacy_bands else []):
            parts.append((np.repeat(near, bands), np.tile(np.arange(bands), len(near)), keys[near].reshape(-1)))
    row, band, key = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(3))
    return pa.table({"row": pa.array(row, pa.int64()), "band": pa.array(band, pa.int16()), "key": pa.array(key, pa.int64())})


def duplicates_of_published(lake: Lake, dataset: str, batch: str, prints: Fingerprints, rows: np.ndarray,
                            config: GateConfig) -> dict[int, tuple[str, str]]:
    """{row: (reason, published id)} for rows whose exact hash or any LSH band key was published before."""
    files = published_signature_files(lake, dataset)
    own = lake.url(f"{signatures_dir(lake, dataset)}/{check_batch_id(batch)}.parquet") if batch else None
    if not files or not len(rows):
        return {}
    index = index_for(lake, dataset)
    if index.refresh(files):
        probe = _probe_keys(prints, rows, config, legacy=bool(index.legacy - {own}))
        found, where, at = index.lookup(probe["key"].to_numpy(), probe["band"].to_numpy(), own)
        hits = pd.DataFrame({"row": probe["row"].to_numpy()[found], "band": probe["band"].to_numpy()[found],
                             "id": index.ids(where[found], at[found])})
    else:  # too large to cache: stream the files through DuckDB
        files = [f for f in files if f != own]
        # footers only: a few ms per file, next to a join that reads every key of every file
        probe = _probe_keys(prints, rows, config, legacy=bool(config.near_dedup and legacy_files(lake, files)))
        hits = _probe_with_duckdb(lake, files, probe)
    hits = hits.sort_values(["row", "band"]).drop_duplicates("row")  # band -1 (exact) first
    return {int(row): ("exact_duplicate_of_published" if band == EXACT_BAND else "near_duplicate_of_published", pid)
            for row, band, pid in zip(hits["row"], hits["band"], hits["id"])}


def _probe_with_duckdb(lake: Lake, files: list[str], probe: pa.Table) -> pd.DataFrame:
    if not files:
        return pd.DataFrame({"row": [], "band": [], "id": []})
    conn = duckdb.connect()
    try:
        if not lake.is_local:
            conn.register_filesystem(lake.fs)
        conn.register("new_keys", probe)
        return conn.execute(PROBE_PUBLISHED, [files]).df()
    finally:
        conn.close()
