"""The published-key index packs (band, file, row) into one int64: every allowed value survives."""

import numpy as np

from quality.signature_index import MAX_FILE_ROWS, MAX_FILES, _pack, _unpack


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
