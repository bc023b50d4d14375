"""Bulk fingerprints match their plain-Python specification, and their band keys behave like datasketch's LSH."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH

from quality.dedup import lsh_bands
from quality.minhash import band_keys, fingerprint_bands, fingerprints, normalize_text, reference_fingerprint
from tests.quality.conftest import sentence

ODD_TEXTS = ["Hello, World! how are you today", "hello   world how are you today!!", "", None, "one",
             "  two words ", "Ünïcode — dash\ttabs\nand newlines", "¿Qué tal? ¡Bien!", "a b c d e f g h i j k l",
             "emoji 🙂 are symbols", "x" * 300]


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "version-1"])
@pytest.mark.parametrize("num_perm", [16, 64, 1024])
def test_bulk_fingerprints_match_the_plain_python_reference(num_perm, legacy):
    texts = ODD_TEXTS if num_perm < 1024 else ODD_TEXTS[:6]  # 1024 bins: one shingle fills them all, too
    exact, signature = fingerprints(pa.array(texts), num_perm, 3, legacy)
    for row, text in enumerate(texts):
        reference_exact, reference_signature = reference_fingerprint(text, num_perm, 3, legacy)
        assert int(exact[row].astype(np.uint64)) == reference_exact, text
        assert signature[row].tolist() == reference_signature, text
    # densified: a text with words has no empty bin left, one without has only empty bins
    wordless = [not words for words in normalize_text(pa.array(texts)).to_pylist()]
    assert (signature == 0xFFFFFFFF).any(axis=1).tolist() == wordless == (signature == 0xFFFFFFFF).all(axis=1).tolist()


def test_normalization_ignores_case_punctuation_and_spacing():
    texts = pa.array(["Hello, World!", "hello world", "  HELLO\tworld ...", "hello there"])
    assert normalize_text(texts).to_pylist() == ["hello world"] * 3 + ["hello there"]
    exact, _ = fingerprints(texts, 16, 2)
    assert exact[0] == exact[1] == exact[2] != exact[3]


def test_chunked_bands_equal_one_pass():
    rng = random.Random(0)
    texts = pa.array([sentence(rng, rng.randint(1, 40)) for _ in range(20_000)])
    exact, keys, empty = fingerprint_bands(texts, 128, 3, 9, 13)
    one_exact, one_signature = fingerprints(texts, 128, 3)
    assert np.array_equal(exact, one_exact) and np.array_equal(keys, band_keys(one_signature, 9, 13))
    assert not empty.any()


def test_estimates_track_true_jaccard():
    rng = random.Random(1)
    estimates, truths = [], []
    for _ in range(40):
        words = [rng.choice("abcdefghijklmnopqrstuvwxyz") + str(rng.randint(0, 999)) for _ in range(80)]
        edited = words[:70] + ["zz"] * 10
        shingles = [set(zip(w, w[1:], w[2:])) for w in (words, edited)]
        truths.append(len(shingles[0] & shingles[1]) / len(shingles[0] | shingles[1]))
        _, signature = fingerprints(pa.array([" ".join(words), " ".join(edited)]), 128, 3)
        estimates.append((signature[0] == signature[1]).mean())
    assert abs(np.mean(estimates) - np.mean(truths)) < 0.03


def test_band_key_matches_are_datasketch_lsh_candidates():
    bands, rows = lsh_bands(0.8, 128)
    rng = random.Random(2)
    base = [sentence(rng, 30) for _ in range(30)]
    texts = base + [t.replace(t.split()[3], "zebra", 1) for t in base[:10]] + [sentence(rng, 30) for _ in range(10)]
    _, signature = fingerprints(pa.array(texts), 128, 3)
    keys = band_keys(signature, bands, rows)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, values in enumerate(signature):
        lsh.insert(str(i), MinHash(num_perm=128, hashvalues=values.astype(np.uint64), scheme="affine32"))
    for i, values in enumerate(signature):
        ours = {str(j) for j in range(len(texts)) if (keys[i] == keys[j]).any()}
        assert ours == set(lsh.query(MinHash(num_perm=128, hashvalues=values.astype(np.uint64), scheme="affine32"))), i
