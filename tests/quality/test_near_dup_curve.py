"""Verdicts against published rows hold datasketch's LSH curve, per bucket of true shingle Jaccard.

The pairs and both verdict paths are the benchmark's (benchmarks/near_dup_curve.py): ours goes
through fingerprint, signature_table, write_signatures and duplicates_of_published, as the gate
does; datasketch's MinHashLSH gets the same bands and rows via params=(b, r).
"""

from __future__ import annotations

import math

import pytest

from benchmarks.near_dup_curve import bucket_shares, datasketch_flags, make_pairs, ours_against_published, ours_within_batch
from quality.config import GateConfig

PAIRS = 2400  # ~150-800 per bucket; ~5 s on 2 cores, most of it datasketch


@pytest.fixture(scope="module")
def curve() -> list[dict]:
    config = GateConfig()
    first, second, jaccard = make_pairs(PAIRS, seed=7)
    return bucket_shares(jaccard, ours=ours_against_published(first, second, config),
                         within=ours_within_batch(first, second, config),
                         datasketch=datasketch_flags(first, second, config))


def _tolerance(row: dict) -> float:
    # The goal is 5 points; each share is a sample over `pairs` pairs with independent hash noise,
    # so allow two standard errors of the difference on top (up to 3.5 points at 300 pairs, p=0.5).
    ours, theirs, n = row["ours"], row["datasketch"], row["pairs"]
    return 0.05 + 2 * math.sqrt((ours * (1 - ours) + theirs * (1 - theirs)) / n)


def test_buckets_hold_enough_pairs(curve):
    assert all(row["pairs"] >= 150 for row in curve), curve


def test_published_verdicts_track_datasketch_per_bucket(curve):
    for row in curve:
        assert abs(row["ours"] - row["datasketch"]) <= _tolerance(row), row


def test_below_the_threshold_few_are_dropped(curve):
    # the bug this guards: 0.5-0.7 pairs were dropped ~70% of the time, datasketch ~1-3%
    low = {row["bucket"]: row for row in curve}
    assert low["0.5-0.7"]["ours"] <= 0.06 and low["< 0.5"]["ours"] <= 0.01, low


def test_within_a_batch_the_estimate_check_drops_no_more_than_the_band_match(curve):
    for row in curve:
        assert row["within"] <= row["ours"] + 0.02, row
