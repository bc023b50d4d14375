import datetime as dt

import pyarrow as pa
import pytest

from storage.schemas import DATASETS, SCHEMAS, SchemaError, check_dataset_name, conform
from tests.storage.conftest import preference_rows

LINEAGE = ("run_id", "batch_id", "stage", "model", "backend", "sampling", "template_id", "template_version",
           "seed", "created_at")


def test_every_dataset_carries_lineage_and_conversations_are_structs():
    assert set(DATASETS) == {"topics", "prompts", "dialogues", "responses", "preferences"}
    for schema in SCHEMAS.values():
        assert set(LINEAGE) <= set(schema.names)
        assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_list(SCHEMAS["preferences"].field("chosen").type)
    assert SCHEMAS["preferences"].field("chosen").type.value_type.names == ["role", "content"]


@pytest.mark.parametrize("name", ["../preferences", "pre/ferences", "a\\b", "..", "", "nope", "Preferences"])
def test_bad_dataset_names_are_refused(name):
    with pytest.raises(SchemaError):
        check_dataset_name(name)


def test_rows_and_tables_conform():
    table = conform("preferences", preference_rows("b1", 3))
    assert table.schema == SCHEMAS["preferences"] and table.num_rows == 3
    assert conform("preferences", table) is table  # exact schema: no copy
    import polars as pl

    assert conform("preferences", pl.from_arrow(table)).num_rows == 3


@pytest.mark.parametrize(
    "change, words",
    [
        ({"chosen": "not a list"}, ["preferences.chosen", "row 1"]),
        ({"chosen_reward": "high"}, ["preferences.chosen_reward", "row 1"]),
        ({"judge": None}, ["preferences.judge", "row 1", "required"]),
        ({"surprise": 1}, ["unknown column", "surprise"]),
        ({"created_at": "yesterday"}, ["preferences.created_at"]),
        ({"chosen": [{"role": "assistant", "content": None}]}, ["preferences.chosen", "row 1", "message 0", "no content"]),
        ({"chosen": [{"role": "assistant"}]}, ["preferences.chosen", "row 1", "no content"]),
        ({"chosen": [None]}, ["preferences.chosen", "row 1", "message 0", "is null"]),
        ({"prompt": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]},
         ["preferences.prompt", "row 1", "message 1", "'tool'", "system, user, assistant"]),
        ({"judge": "whatever"}, ["preferences.judge", "row 1", "'whatever'", "ground_truth"]),
        ({"chosen_attributes": {"helpfulnes": 4.0}}, ["preferences.chosen_attributes", "row 1", "helpfulnes", "helpfulness"]),
    ],
)
def test_rows_that_do_not_match_name_dataset_column_and_row(change, words):
    rows = preference_rows("b1", 3)
    rows[1] = {**rows[1], **change}
    with pytest.raises(SchemaError) as info:
        conform("preferences", rows)
    for word in words:
        assert word in str(info.value)


def test_missing_required_column_and_bad_cast_in_a_table():
    rows = preference_rows("b1", 2)
    for row in rows:
        del row["prompt"]
    with pytest.raises(SchemaError, match="required column.*prompt"):
        conform("preferences", rows)
    table = conform("preferences", preference_rows("b1", 2)).set_column(
        SCHEMAS["preferences"].get_field_index("margin"), "margin", pa.array(["x", "y"]))
    with pytest.raises(SchemaError, match="preferences.margin"):
        conform("preferences", table)


def test_timestamps_without_time_zone_are_refused_or_kept_utc():
    rows = preference_rows("b1", 1)
    rows[0]["created_at"] = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    assert conform("preferences", rows).column("created_at")[0].as_py().tzinfo is not None


@pytest.mark.parametrize("dataset", DATASETS)
def test_batch_files_read_back_with_exactly_the_dataset_schema(tmp_path, dataset):
    # The lake writes no Arrow schema into the footer: the Parquet schema alone must restore
    # every type, nested field name and nullability.
    import pyarrow.parquet as pq

    from storage.config import LakeConfig
    from storage.lake import Lake

    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    rows = preference_rows("b1", 3) if dataset == "preferences" else SCHEMAS[dataset].empty_table()
    staged = lake.stage_batch(dataset, "2025-01-02", "b1", rows)
    back = pq.read_table(staged.url)
    assert back.schema.equals(SCHEMAS[dataset])
    assert conform(dataset, back).num_rows == back.num_rows
    if dataset == "preferences":
        assert back.to_pylist() == conform(dataset, preference_rows("b1", 3)).to_pylist()
        group = pq.ParquetFile(staged.url).metadata.row_group(0)
        leaf = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
        assert leaf["run_id"].is_stats_set  # lineage: DuckDB prunes files on it
        assert leaf["chosen_reward"].statistics.max == 4.0
        assert not leaf["id"].is_stats_set  # unique ids prune nothing


def test_bad_messages_in_an_arrow_table_name_the_row_of_the_batch():
    rows = preference_rows("b1", 4)
    rows[3]["rejected"] = [{"role": "assistant", "content": "fine"}, None]
    table = pa.Table.from_pylist(rows, schema=SCHEMAS["preferences"])  # Arrow takes the null message
    with pytest.raises(SchemaError, match=r"preferences.rejected: row 2, message 1 is null"):
        conform("preferences", table.slice(1))  # row 3 of the table is row 2 of the slice
