"""The published-key index packs (band, file, row) into one int64: every allowed value survives.
Signature files name their MinHash scheme, and rows published with version 1 keys are still found."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quality import dedup
from quality.config import GateConfig
from quality.signature_index import (MAX_FILE_ROWS, MAX_FILES, SIGNATURE_VERSION_KEY, _pack, _unpack, forget_indexes,
                                     index_for)
from storage.config import LakeConfig
from storage.lake import Lake


def test_packed_entries_round_trip_at_their_limits():
    # bands run from -1 (exact hash) to num_perm - 1 (num_perm is at most 1024)
    bands = np.array([-1, 0, 8, 1023, 1023, -1], dtype=np.int16)
    files = np.array([0, 1, 77, MAX_FILES - 1, 0, MAX_FILES - 1], dtype=np.int64)
    rows = np.array([0, 5, 250_000, MAX_FILE_ROWS - 1, MAX_FILE_ROWS - 1, 0], dtype=np.int64)
    packed = _pack(bands, files, rows)
    assert (packed >= 0).all()  # the sign bit stays clear
    got_bands, got_files, got_rows = _unpack(packed)
    assert got_bands.tolist() == bands.tolist()
    assert got_files.tolist() == files.tolist()
    assert got_rows.tolist() == rows.tolist()


# A lake published before the current MinHash scheme: its signature files carry version 1 band keys
# and no version in their metadata. Its rows must keep their near-duplicate protection.

PUBLISHED = ("Write a detailed weekly meal plan for a family of four that keeps the grocery budget under one "
             "hundred dollars and uses seasonal vegetables, beans, rice and eggs, with a shopping list grouped by aisle "
             "and tips for cooking on Sunday so that weekday dinners take less than twenty minutes")
NEAR = PUBLISHED.replace("twenty minutes", "twenty five minutes")


@pytest.fixture(params=["index", "duckdb"])
def probing(request, monkeypatch):
    forget_indexes()
    if request.param == "duckdb":
        monkeypatch.setattr("quality.signature_index.MAX_INDEX_KEYS", 0)
    yield request.param
    forget_indexes()


def _publish_version_1(lake: Lake, texts: list[str], config: GateConfig) -> None:
    """Signature files as the version 1 gate wrote them: version 1 band keys, no version metadata."""
    prints = dedup.fingerprint(pa.array(texts), config)
    old = dedup.Fingerprints(prints.exact, prints.legacy_bands(), prints.empty)
    rows = np.arange(len(texts))
    table = dedup.signature_table(pa.array([f"old-{i}" for i in rows]), old, rows).replace_schema_metadata(None)
    folder = dedup.signatures_dir(lake, "prompts")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(table, f"{folder}/old.parquet")


def test_rows_published_with_version_1_keys_are_still_found(tmp_path, probing):
    lake, config = Lake(LakeConfig(root=str(tmp_path))), GateConfig()
    _publish_version_1(lake, [PUBLISHED, "an unrelated prompt about the history of tea in china"], config)
    prints = dedup.fingerprint(pa.array([NEAR, PUBLISHED, "something else entirely, about rockets"]), config)
    found = dedup.duplicates_of_published(lake, "prompts", "new", prints, np.arange(3), config)
    assert found == {0: ("near_duplicate_of_published", "old-0"), 1: ("exact_duplicate_of_published", "old-0")}
    # the near duplicate is found through the version 1 keys: the current ones do not meet them
    current_only = dedup.Fingerprints(prints.exact, prints.bands, prints.empty)
    assert dedup.duplicates_of_published(lake, "prompts", "new", current_only, np.arange(1), config) == {}


def test_current_files_are_marked_and_need_no_version_1_keys(tmp_path, probing):
    lake, config = Lake(LakeConfig(root=str(tmp_path))), GateConfig()
    published = dedup.fingerprint(pa.array([PUBLISHED]), config)
    path = dedup.write_signatures(lake, "prompts", "b1", dedup.signature_table(pa.array(["new-0"]), published, np.arange(1)))
    assert pq.read_schema(path).metadata[SIGNATURE_VERSION_KEY] == b"2"

    def never() -> np.ndarray:
        raise AssertionError("version 1 keys computed for a lake without version 1 files")

    prints = dedup.fingerprint(pa.array([NEAR]), config)
    guarded = dedup.Fingerprints(prints.exact, prints.bands, prints.empty, never)
    found = dedup.duplicates_of_published(lake, "prompts", "new", guarded, np.arange(1), config)
    assert found == {0: ("near_duplicate_of_published", "new-0")}
    if probing == "index":
        assert index_for(lake, "prompts").legacy == set()


def test_a_file_of_a_newer_scheme_is_refused_not_silently_missed(tmp_path, probing):
    lake, config = Lake(LakeConfig(root=str(tmp_path))), GateConfig()
    prints = dedup.fingerprint(pa.array([PUBLISHED]), config)
    path = dedup.write_signatures(lake, "prompts", "b1", dedup.signature_table(pa.array(["new-0"]), prints, np.arange(1)))
    pq.write_table(pq.read_table(path).replace_schema_metadata({SIGNATURE_VERSION_KEY: b"99"}), path)
    with pytest.raises(ValueError, match="version 99"):
        dedup.duplicates_of_published(lake, "prompts", "new", prints, np.arange(1), config)
