"""Text fingerprints in bulk, with numpy: normalized-text hashes and one-permutation MinHash.

Why not datasketch's `MinHash.update` per text: it hashes every shingle with SHA-1 in Python
and applies num_perm permutations to each, ~num_perm operations per shingle (measured here:
3 s for 500k shingles at 128 permutations, so a 100k-row batch would take ~40 s). One-permutation
hashing (Li, Owen, Zhang 2012) hashes each shingle once and splits the hash space into num_perm
bins; empty bins borrow from the next full bin (rotation densification, Shrivastava & Li 2014),
so the signature keeps MinHash's property: P[two bins equal] = Jaccard. datasketch still picks the
LSH bands (its false-positive/negative optimizer, see quality.dedup.lsh_bands).

All hashes are plain numpy uint64 arithmetic (wrapping mod 2**64), so they are the same in every
process and version: they are stored in the lake and compared across runs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_BASE = 0x100000001B3  # odd, so it has an inverse mod 2**64
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
_EMPTY = np.uint32(0xFFFFFFFF)  # marks "no shingle fell here"; real bin values stop one below
_BORROW_STEP = np.uint32(0x9E3779B1)  # odd: a borrowed value differs per distance borrowed
_BAND_SALT = np.random.default_rng(20240614).integers(1, 1 << 63, size=1024, dtype=np.uint64) | np.uint64(1)
_CHUNK = 8192  # texts per pass: keeps the (texts x bins) matrices in cache


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


def reference_fingerprint(text: str | None, num_perm: int, shingle_words: int) -> tuple[int, list[int]]:
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
        index, low = value >> (64 - (num_perm.bit_length() - 1)), min(value & 0xFFFFFFFF, 0xFFFFFFFE)
        bins[index] = low if bins[index] is None else min(bins[index], low)
    signature = []
    for j in range(num_perm):  # rotation densification, as in _densify
        for distance in range(num_perm):
            donor = bins[(j + distance) % num_perm]
            if donor is not None:
                signature.append((donor + distance * int(_BORROW_STEP)) % (1 << 32))
                break
        else:
            signature.append(int(_EMPTY))
    return poly(words), signature


def _densify(signature: np.ndarray) -> np.ndarray:
    """Empty bins take the next full bin's value (circularly), shifted by the distance borrowed."""
    rows, bins = signature.shape
    columns = np.ascontiguousarray(signature.T)
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
    return np.ascontiguousarray(columns.T)


def fingerprints(texts: pa.Array, num_perm: int, shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """(exact hash of the normalized text as int64, MinHash signature as (n, num_perm) uint64).

    A text with no words gets an all-empty signature (see signature_is_empty).
    """
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
    values = np.minimum(hashes & np.uint64(0xFFFFFFFF), np.uint64(0xFFFFFFFE)).astype(np.uint32)
    signature = np.full(len(starts) * num_perm, _EMPTY, dtype=np.uint32)
    np.minimum.at(signature, shingle_doc * num_perm + bins, values)
    return exact, _densify(signature.reshape(len(starts), num_perm))


def fingerprint_bands(texts: pa.Array, num_perm: int, shingle_words: int, bands: int, rows: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact hash (n,), LSH band keys (n, bands), no-words flag (n,)), computed chunk by chunk.

    Only band keys leave this function: a whole batch's signatures never sit in memory at once.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    exact, keys, empty = [], [], []
    for start in range(0, len(texts), _CHUNK):
        chunk_exact, signature = fingerprints(texts.slice(start, _CHUNK), num_perm, shingle_words)
        exact.append(chunk_exact)
        keys.append(band_keys(signature, bands, rows))
        empty.append(signature_is_empty(signature))
    if not exact:
        return np.zeros(0, np.int64), np.zeros((0, bands), np.int64), np.zeros(0, bool)
    return np.concatenate(exact), np.concatenate(keys), np.concatenate(empty)


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH band keys, one int64 per (text, band): equal keys <=> equal `rows` bins in that band."""
    used = signature[:, : bands * rows].reshape(len(signature), bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        combined = (used * _BAND_SALT[:rows]).sum(axis=2, dtype=np.uint64)
        combined += np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return mix64(combined).view(np.int64)


def signature_is_empty(signature: np.ndarray) -> np.ndarray:
    return (signature == _EMPTY).all(axis=1) if signature.size else np.zeros(len(signature), bool)
