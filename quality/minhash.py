"""Text fingerprints in bulk, with numpy: normalized-text hashes and one-permutation MinHash.

Why not datasketch's `MinHash.update` per text: it hashes every shingle with SHA-1 in Python
and applies num_perm permutations to each, ~num_perm operations per shingle (measured here:
3 s for 500k shingles at 128 permutations, so a 100k-row batch would take ~40 s). One-permutation
hashing (Li, Owen, Zhang 2012) hashes each shingle once and splits the hash space into num_perm
bins. A prompt has fewer shingles than bins, so most bins are empty and are filled from full ones
(densification): P[two bins equal] = Jaccard holds for any rule that picks the donor from the set's
occupancy alone. LSH also needs the bins of one band to be about independent, and the rotation
rule (take the next full bin, Shrivastava & Li 2014) broke that: neighbouring empty bins took the
same donor, a band of contiguous bins matched far more often than J**rows, and the gate dropped
prompts of Jaccard 0.5-0.7 as near-duplicates of published ones (benchmarks/near_dup_curve.py).
Here an empty bin takes the first full bin among 8 fixed pseudo-random probes (optimal
densification, Shrivastava 2017), so donors are spread evenly; the few bins still empty then
borrow, stage by stage, what a far bin holds after the stage before. datasketch still picks the
LSH bands (its false-positive/negative optimizer, see quality.dedup.lsh_bands).

All hashes are plain numpy uint64 arithmetic (wrapping mod 2**64), so they are the same in every
process and version: they are stored in the lake and compared across runs. SIGNATURE_VERSION names
the scheme; lakes published with version 1 (rotation) are still probed with legacy=True keys.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_BASE = 0x100000001B3  # odd, so it has an inverse mod 2**64
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
_EMPTY = np.uint32(0xFFFFFFFF)  # marks "no shingle fell here"; every real bin value is smaller
SIGNATURE_VERSION = 2
# A bin keeps the low 28 bits of its smallest shingle hash: the 4 bits above number the probe, so
# "the first full probe" is a plain minimum over (probe number, value) keys.
_VALUE_BITS = 28
_VALUE = np.uint32((1 << _VALUE_BITS) - 1)
_PROBES = 8  # probes per empty bin: with a third of the bins full, 4% stay empty for borrowing
_BORROW_STEP = np.uint32(0x9E3779B1)  # version 1 only: a borrowed value differs per distance borrowed
_BAND_SALT = np.random.default_rng(20240614).integers(1, 1 << 63, size=1024, dtype=np.uint64) | np.uint64(1)
_CHUNK = 8192  # texts per pass: keeps the (texts x bins) matrices in cache
_DENSIFY_TEXTS = 2048  # texts densified at once: 1 MB per (bins x texts) matrix at 128 bins


def split_words(texts: pa.Array) -> pa.ListArray:
    """Normalized words: lowercased, punctuation and symbols stripped, split on any whitespace."""
    lowered = pc.utf8_lower(texts)
    stripped = pc.replace_substring_regex(lowered, pattern=r"[\p{P}\p{S}]+", replacement="")
    return pc.utf8_split_whitespace(stripped)


def normalize_text(texts: pa.Array) -> pa.Array:
    """Lowercase, strip punctuation and symbols, collapse whitespace (null stays null).

    >>> normalize_text(pa.array(["  Hello,   WORLD!! ", None])).to_pylist()
    ['hello world', None]
    """
    words = split_words(texts)
    # Arrow splits leading/trailing whitespace into empty words: trim what they join into
    return pc.utf8_trim_whitespace(pc.binary_join(words, pa.scalar(" ", words.type.value_type)))


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the whole word."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


_POWERS: dict[str, np.ndarray] = {}


def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**t and BASE**-t for t < count, grown on demand and kept for the process."""
    if len(_POWERS.get("up", ())) < count:
        size = max(count, 2 * len(_POWERS.get("up", ())), 1 << 16)
        with np.errstate(over="ignore"):
            _POWERS["up"] = np.cumprod(np.full(size, _BASE, dtype=np.uint64)) * np.uint64(_BASE_INVERSE)
            _POWERS["down"] = np.cumprod(np.full(size, _BASE_INVERSE, dtype=np.uint64)) * np.uint64(_BASE)
    return _POWERS["up"], _POWERS["down"]


def _span_hasher(sequence: np.ndarray):
    """Prefix sums of value * BASE**position, so the hash of any span costs two lookups.

    The hash of sequence[s:e] is sum(sequence[s + t] * BASE**t) mod 2**64, mixed with its length:
    the same values hash the same wherever they sit.
    """
    powers, inverse = _powers(len(sequence) + 1)
    with np.errstate(over="ignore"):
        prefix = np.concatenate([[np.uint64(0)], np.cumsum(sequence.astype(np.uint64) * powers[: len(sequence)])])

    def span(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            raw = (prefix[ends] - prefix[starts]) * inverse[starts]
            return mix64(raw + (ends - starts).astype(np.uint64))

    return span


def _word_hashes(words: pa.Array) -> np.ndarray:
    """A 64-bit hash of each word's UTF-8 bytes, computed once per distinct word."""
    encoded = words.dictionary_encode()
    distinct = encoded.dictionary.cast(pa.large_string())
    offsets = np.frombuffer(distinct.buffers()[1], dtype=np.int64)[distinct.offset: distinct.offset + len(distinct) + 1]
    data_buffer = distinct.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    per_distinct = _span_hasher(data)(offsets[:-1], offsets[1:])
    return per_distinct[encoded.indices.to_numpy(zero_copy_only=False)]


def _table_bins(kind: int, stage: int, bins: np.ndarray, count: int) -> np.ndarray:
    """A fixed pseudo-random number below `count` (a power of two) per (kind, stage, bin)."""
    salted = np.uint64((kind << 48) | (stage << 32)) | np.asarray(bins, dtype=np.uint64)
    return (mix64(salted) >> np.uint64(64 - (count.bit_length() - 1))).astype(np.intp)


@functools.cache
def _densify_tables(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """(probes (_PROBES, num_perm), borrows (stages, num_perm)): the bins each bin reads, in order.

    Borrowing reads a bin a quarter to three quarters of the way round, never a near neighbour (one
    of its own band, bands being contiguous); its last stages read j+1, j+2, j+4, ...: after them
    every bin has reached every other.
    """
    bins = np.arange(num_perm)
    probes = np.stack([_table_bins(1, t, bins, num_perm) for t in range(_PROBES)])
    stages = 2 * (num_perm.bit_length() - 1)
    far = [(bins + num_perm // 4 + _table_bins(2, s, bins, num_perm // 2)) % num_perm for s in range(stages)]
    near = [(bins + (1 << d)) % num_perm for d in range(num_perm.bit_length() - 1)]
    return probes, np.stack(far + near)


def reference_fingerprint(text: str | None, num_perm: int, shingle_words: int, legacy: bool = False
                          ) -> tuple[int, list[int]]:
    """One text's (exact hash, signature) in plain Python: the specification the bulk path must match."""
    import unicodedata

    mod = 1 << 64

    def poly(values: list[int]) -> int:
        total = sum(v * pow(_BASE, t, mod) for t, v in enumerate(values)) % mod
        return int(mix64(np.array([(total + len(values)) % mod], dtype=np.uint64))[0])

    kept = "".join(ch for ch in (text or "").lower() if unicodedata.category(ch)[0] not in "PS")
    words = [poly(list(word.encode())) for word in kept.split()]
    windows = [words[i: i + shingle_words] for i in range(len(words) - shingle_words + 1)] or ([words] if words else [])
    bins: list[int | None] = [None] * num_perm
    for window in windows:
        value = poly(window)
        index = value >> (64 - (num_perm.bit_length() - 1))
        low = min(value & 0xFFFFFFFF, 0xFFFFFFFE) if legacy else value & int(_VALUE)
        bins[index] = low if bins[index] is None else min(bins[index], low)
    if legacy:
        return poly(words), _reference_rotation(bins)
    probes, borrows = _densify_tables(num_perm)
    # probing: an empty bin takes the first full bin among its probes, tagged with the probe's number
    values = [v if v is not None else next(((t << _VALUE_BITS) | bins[p] for t, p in enumerate(probes[:, j], start=1)
                                            if bins[p] is not None), None) for j, v in enumerate(bins)]
    # borrowing: still empty, take what another bin held after the stage before
    for stage in borrows:
        if None not in values or all(v is None for v in values):
            break
        values = [v if v is not None else values[stage[j]] for j, v in enumerate(values)]
    return poly(words), [int(_EMPTY) if v is None else v for v in values]


def _reference_rotation(bins: list[int | None]) -> list[int]:
    """Version 1: an empty bin takes the next full bin (circularly), shifted by the distance."""
    signature = []
    for j in range(len(bins)):
        for distance in range(len(bins)):
            donor = bins[(j + distance) % len(bins)]
            if donor is not None:
                signature.append((donor + distance * int(_BORROW_STEP)) % (1 << 32))
                break
        else:
            signature.append(int(_EMPTY))
    return signature


def _densify(columns: np.ndarray) -> np.ndarray:
    """The empty bins of (num_perm, texts) bins filled: probing, then borrowing."""
    num_perm, count = columns.shape
    if count > _DENSIFY_TEXTS:  # probing reads the bins 8 times: blocks that stay in cache
        return np.concatenate([_densify(np.ascontiguousarray(columns[:, start: start + _DENSIFY_TEXTS]))
                               for start in range(0, count, _DENSIFY_TEXTS)], axis=1)
    probes, borrows = _densify_tables(num_perm)
    best, probe = columns.copy(), np.empty_like(columns)
    for number, bins in enumerate(probes, start=1):
        np.take(columns, bins, axis=0, out=probe)
        probe |= np.uint32(number << _VALUE_BITS)
        np.minimum(best, probe, out=best)  # a full bin's own value (probe number 0) always wins
    # borrowing: whole bins while many are empty (short texts), then only the empty ones
    missing = best == _EMPTY
    hopeless = missing.all(axis=0)  # a text without any shingle has nothing to borrow
    stage, never = 0, num_perm * np.count_nonzero(hopeless)
    while stage < len(borrows) and np.count_nonzero(missing) - never > best.size // 32:
        # all ones over full bins, so the minimum changes only empty ones (a masked copy is 5x slower)
        keep = (~missing).astype(np.uint32)
        keep *= _EMPTY
        borrowed = best[borrows[stage]]  # each stage reads the one before
        borrowed |= keep
        np.minimum(best, borrowed, out=best)
        missing = best == _EMPTY
        stage += 1
    empty = np.flatnonzero(missing & ~hopeless)
    bins, texts = np.divmod(empty, count)
    flat = best.reshape(-1)
    for source in borrows[stage:]:
        if not len(empty):
            break
        got = flat[source[bins] * count + texts]  # all read before any is written, as above
        filled = got != _EMPTY
        flat[empty[filled]] = got[filled]
        empty, bins, texts = empty[~filled], bins[~filled], texts[~filled]
    return best


def _densify_rotation(columns: np.ndarray) -> np.ndarray:
    """Version 1, for lakes published with it: empty bins of (num_perm, texts) bins take the next
    full bin's value (circularly), shifted by the distance borrowed."""
    bins, rows = columns.shape
    full = columns != _EMPTY
    # walking right to left, the bin after the last one is bin 0: start from the first full bin's
    # value, shifted by its distance from bin 0, and one lap fills every empty bin
    first = full.argmax(axis=0)
    with np.errstate(over="ignore"):
        carry = columns[first, np.arange(rows)] + first.astype(np.uint32) * _BORROW_STEP
        for j in range(bins - 1, -1, -1):
            carry = np.where(full[j], columns[j], carry + _BORROW_STEP)
            columns[j] = carry
    columns[:, ~full.any(axis=0)] = _EMPTY  # no shingle at all: nothing to borrow
    return columns


def _signature_columns(texts: pa.Array, num_perm: int, shingle_words: int, legacy: bool
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(exact hashes (n,), densified signatures bin by bin (num_perm, n)): one row per bin, so
    densifying and band keys read whole bins at once."""
    words = split_words(texts.cast(pa.large_string()))
    # Arrow splits "" into [""]: drop empty words so offsets count real words (nulls have none)
    values = words.values
    keep = pc.greater(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(keep)])[words.offsets.to_numpy()]
    values = values.filter(pa.array(keep))
    sequence = _word_hashes(values) if len(values) else np.zeros(0, np.uint64)
    span = _span_hasher(sequence)
    starts, ends = offsets[:-1], offsets[1:]
    exact = span(starts, ends).view(np.int64)
    # every window of `shingle_words` words inside one text; shorter texts are one shingle
    doc = np.repeat(np.arange(len(starts)), ends - starts)
    first = np.arange(len(sequence))
    inside = first + shingle_words <= ends[doc]
    short = np.flatnonzero((ends > starts) & (ends - starts < shingle_words))
    shingle_doc = np.concatenate([doc[inside], short])
    hashes = span(np.concatenate([first[inside], starts[short]]),
                  np.concatenate([first[inside] + shingle_words, ends[short]]))
    bits = num_perm.bit_length() - 1
    bins = (hashes >> np.uint64(64 - bits)).astype(np.int64)
    if legacy:
        values = np.minimum(hashes & np.uint64(0xFFFFFFFF), np.uint64(0xFFFFFFFE)).astype(np.uint32)
    else:
        values = (hashes & np.uint64(_VALUE)).astype(np.uint32)
    columns = np.full(num_perm * len(starts), _EMPTY, dtype=np.uint32)
    np.minimum.at(columns, bins * len(starts) + shingle_doc, values)
    columns = columns.reshape(num_perm, len(starts))
    return exact, _densify_rotation(columns) if legacy else _densify(columns)


def fingerprints(texts: pa.Array, num_perm: int, shingle_words: int, legacy: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(exact hash of the normalized text as int64, MinHash signature as (n, num_perm) uint32).

    A text with no words gets an all-empty signature (see signature_is_empty). `legacy`: the
    version 1 signature (rotation densification), only to probe lakes published with it.
    """
    exact, columns = _signature_columns(texts, num_perm, shingle_words, legacy)
    return exact, np.ascontiguousarray(columns.T)


def fingerprint_bands(texts: pa.Array, num_perm: int, shingle_words: int, bands: int, rows: int,
                      legacy: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact hash (n,), LSH band keys (n, bands), no-words flag (n,)), computed chunk by chunk.

    Only band keys leave this function: a whole batch's signatures never sit in memory at once.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    exact, keys, empty = [], [], []
    for start in range(0, len(texts), _CHUNK):
        chunk_exact, columns = _signature_columns(texts.slice(start, _CHUNK), num_perm, shingle_words, legacy)
        exact.append(chunk_exact)
        keys.append(_column_band_keys(columns, bands, rows))
        empty.append((columns == _EMPTY).all(axis=0))
    if not exact:
        return np.zeros(0, np.int64), np.zeros((0, bands), np.int64), np.zeros(0, bool)
    return np.concatenate(exact), np.concatenate(keys), np.concatenate(empty)


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys, one int64 per (text, band): equal keys <=> equal `rows` bins in that band."""
    return _column_band_keys(signature.T, bands, rows)


def _column_band_keys(columns: np.ndarray, bands: int, rows: int) -> np.ndarray:
    used = columns[: bands * rows].reshape(bands, rows, columns.shape[1]).astype(np.uint64)
    with np.errstate(over="ignore"):
        combined = (used * _BAND_SALT[:rows, None]).sum(axis=1, dtype=np.uint64)
        combined += np.arange(bands, dtype=np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
    return np.ascontiguousarray(mix64(combined).T).view(np.int64)


def signature_is_empty(signature: np.ndarray) -> np.ndarray:
    return (signature == _EMPTY).all(axis=1) if signature.size else np.zeros(len(signature), bool)
