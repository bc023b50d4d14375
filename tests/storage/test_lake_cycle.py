"""The full cycle on a local folder and on S3 (moto_server): land, publish, quarantine, re-land, read back."""

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage.catalog import Catalog, CatalogError
from storage.config import LakeConfig
from storage.lake import Lake, LakeError, batch_id
from storage.schemas import SchemaError
from tests.storage.conftest import preference_rows

RUN_DATE = "2025-01-02"


def sdg_sql(config_file, query):
    result = CliRunner().invoke(app, ["sql", "--config", str(config_file), "--format", "json", query])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_land_publish_quarantine_reland(lake_config, config_file):
    lake = Lake(lake_config)
    catalog = Catalog(lake_config, lake)
    catalog.record_run("run-1", "test", "fp")
    good, bad = batch_id("run-1", "preferences", 0, "fp"), batch_id("run-1", "preferences", 1, "fp")
    assert good == batch_id("run-1", "preferences", 0, "fp") and good != bad

    staged = lake.stage_batch("preferences", RUN_DATE, good, preference_rows(good, 10))
    assert lake.read_staged(staged).num_rows == 10
    catalog.refresh_views()
    assert sdg_sql(config_file, "SELECT count(*) AS n FROM preferences") == [{"n": 0}]  # staged is invisible

    catalog.record_batch(staged, "published", "run-1", lake.publish(staged))
    rejected = lake.stage_batch("preferences", RUN_DATE, bad, preference_rows(bad, 5, start=100))
    url = lake.quarantine(rejected, {"failed": ["reward >= 2"], "observed": 1.0})
    catalog.record_batch(rejected, "quarantined", "run-1", url)
    catalog.record_gate_results(bad, [{"expectation": "reward >= 2", "success": False, "observed": 1.0, "threshold": 2}])
    quarantined = lake.list_quarantined()
    assert [q["batch_id"] for q in quarantined] == [bad]
    with lake.fs.open(quarantined[0]["report_url"]) as f:
        assert json.load(f)["observed"] == 1.0

    # Re-landing the published batch (a retry) overwrites it: still 10 rows, not 20.
    again = lake.stage_batch("preferences", RUN_DATE, good, preference_rows(good, 10))
    catalog.record_batch(again, "published", "run-1", lake.publish(again))
    catalog.finish_run("run-1")
    catalog.refresh_views()

    rows = sdg_sql(config_file, "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(run_date)::VARCHAR AS d FROM preferences")
    assert rows == [{"n": 10, "ids": 10, "d": RUN_DATE}]
    assert sdg_sql(config_file, "SELECT unnest(chosen).content AS c FROM preferences WHERE id = 'pair-3'") == [{"c": "4"}]
    states = sdg_sql(config_file, "SELECT state, sum(rows)::INT AS rows FROM batches GROUP BY state ORDER BY state")
    assert states == [{"state": "published", "rows": 10}, {"state": "quarantined", "rows": 5}]
    assert sdg_sql(config_file, "SELECT status FROM runs") == [{"status": "completed"}]
    assert lake.list_batches("staging") == []
    with pytest.raises(LakeError, match="not in staging"):  # published already: nothing to move
        lake.publish(again)
    assert [b["batch_id"] for b in lake.list_batches("published")] == [good]  # and nothing lost

    # A batch that fails its gate on a rerun leaves the published area.
    third = lake.stage_batch("preferences", RUN_DATE, good, preference_rows(good, 10))
    lake.quarantine(third, {"failed": ["dedup"]})
    catalog.refresh_views()
    assert sdg_sql(config_file, "SELECT count(*) AS n FROM preferences") == [{"n": 0}]


def test_datasets_and_refresh_commands(lake_config, config_file):
    lake = Lake(lake_config)
    staged = lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 4))
    lake.publish(staged)
    runner = CliRunner()
    assert runner.invoke(app, ["catalog", "refresh", "-c", str(config_file)]).exit_code == 0
    result = runner.invoke(app, ["datasets", "-c", str(config_file)])
    assert result.exit_code == 0 and "preferences" in result.stdout and RUN_DATE in result.stdout


def test_sql_runs_queries_only(lake_config, config_file, tmp_path):
    # The connection is read-only, but that guards only the catalog file: COPY would write anywhere.
    lake = Lake(lake_config)
    lake.publish(lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 2)))
    target = tmp_path / "written.csv"
    refused = [f"COPY (SELECT 1 AS a) TO '{target}'", f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{target}'",
               "SELECT 1; SELECT 2", "SET threads = 1", "CREATE TABLE t AS SELECT 1", "INSTALL httpfs"]
    for query in refused:
        result = CliRunner().invoke(app, ["sql", "-c", str(config_file), query])
        assert result.exit_code == 1 and "error" in result.output, (query, result.output)
    assert not target.exists()
    assert {"preferences", "runs"} <= {row["name"] for row in sdg_sql(config_file, "SHOW TABLES")}
    assert sdg_sql(config_file, "WITH p AS (FROM preferences) SELECT count(*) AS n FROM p") == [{"n": 2}]
    # a repeated column name keeps both columns
    assert sdg_sql(config_file, "SELECT 1 AS a, 2 AS a") == [{"a": 1, "a_2": 2}]
    csv_out = CliRunner().invoke(app, ["sql", "-c", str(config_file), "-f", "csv", "SELECT 1 AS a, 2 AS a"])
    assert csv_out.stdout.splitlines() == ["a,a_2", "1,2"]


def test_views_follow_the_lake_without_a_refresh(lake_config, config_file):
    lake = Lake(lake_config)
    catalog = Catalog(lake_config, lake)
    catalog.refresh_views()  # nothing published yet: every view reads an empty table
    staged = lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 3))
    catalog.record_batch(staged, "published", "run-1", lake.publish(staged))
    assert sdg_sql(config_file, "SELECT count(*) AS n FROM preferences") == [{"n": 3}]  # first batch: view switched

    again = lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 3))
    catalog.record_batch(again, "quarantined", "run-2", lake.quarantine(again, {"failed": ["dedup"]}))
    # its last file is gone: the query remakes the views instead of failing on an empty glob
    assert sdg_sql(config_file, "SELECT count(*) AS n FROM preferences") == [{"n": 0}]
    assert catalog.dataset_counts().num_rows == 0


def test_bulk_batch_records_keep_one_row_per_batch(lake_config, config_file):
    lake = Lake(lake_config)
    catalog = Catalog(lake_config, lake)
    first = lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 4))
    second = lake.stage_batch("preferences", RUN_DATE, "b-2", preference_rows("b-2", 3, start=10))
    # one call naming b-1 twice (staged, then published) and a second batch: the last state wins
    catalog.record_batches([(first, "staged", "run-1", None), (second, "staged", "run-1", None),
                            (first, "published", "run-1", "file:///published/b-1.parquet")])
    catalog.record_batches([(second, "quarantined", "run-2", None)])  # an update, not a second row
    rows = sdg_sql(config_file, "SELECT batch_id, state, run_id, rows::INT AS rows, run_date::VARCHAR AS d, url "
                                "FROM batches ORDER BY batch_id")
    assert rows == [
        {"batch_id": "b-1", "state": "published", "run_id": "run-1", "rows": 4, "d": RUN_DATE,
         "url": "file:///published/b-1.parquet"},
        {"batch_id": "b-2", "state": "quarantined", "run_id": "run-2", "rows": 3, "d": RUN_DATE, "url": second.url},
    ]
    with pytest.raises(CatalogError, match="not one of staged, published, quarantined"):
        catalog.record_batches([(first, "lost", "run-1", None)])


def test_schema_mismatch_leaves_nothing_behind(lake_config):
    lake = Lake(lake_config)
    rows = preference_rows("b-1", 3)
    rows[2]["chosen"] = "plain text"
    with pytest.raises(SchemaError, match="preferences.chosen"):
        lake.stage_batch("preferences", RUN_DATE, "b-1", rows)
    assert lake.list_batches("staging") == [] and lake.list_batches("published") == []
    if lake.is_local:
        assert not [p for p in (lake.fs.find(lake.root)) if p.endswith(".tmp")]


def test_a_failed_write_leaves_no_temp_file_and_no_batch(tmp_path, monkeypatch):
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))

    def disk_full(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("storage.lake.os.replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 3))
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "lake").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    "dataset, run_date, batch, error",
    [("../etc", RUN_DATE, "b", SchemaError), ("nope", RUN_DATE, "b", SchemaError),
     ("preferences", "2025-13-01", "b", LakeError), ("preferences", RUN_DATE, "../b", LakeError),
     ("preferences", RUN_DATE, "a/b", LakeError)],
)
def test_bad_names_are_refused(tmp_path, dataset, run_date, batch, error):
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    with pytest.raises(error):
        lake.stage_batch(dataset, run_date, batch, preference_rows("b", 1))


def test_unreachable_lake_is_a_clear_error(tmp_path, moto_endpoint):
    down = LakeConfig(root="s3://lake-missing/x", catalog=str(tmp_path / "c.duckdb"),
                      storage_options={"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"})
    with pytest.raises(LakeError, match="cannot be reached"):
        Lake(down)
    missing = down.model_copy(update={"storage_options": {"endpoint_url": moto_endpoint, "key": "k", "secret": "s"}})
    with pytest.raises(LakeError, match="does not exist"):
        Lake(missing)
    config = tmp_path / "run.yaml"
    config.write_text(f"lake:\n  root: s3://lake-missing/x\n  catalog: {tmp_path}/c.duckdb\n"
                      "  storage_options: {endpoint_url: 'http://127.0.0.1:9', key: k, secret: s}\n")
    result = CliRunner().invoke(app, ["sql", "-c", str(config), "SELECT 1"])
    assert result.exit_code == 1 and "cannot be reached" in result.output


def test_s3_options_that_are_not_strings_reach_s3fs(tmp_path, moto_endpoint):
    from tests.storage.conftest import make_bucket

    bucket = make_bucket(moto_endpoint)
    config = tmp_path / "run.yaml"  # nested client_kwargs and a boolean, as s3fs takes them
    config.write_text(f"lake:\n  root: s3://{bucket}/sdg\n  catalog: {tmp_path}/c.duckdb\n  storage_options:\n"
                      "    key: testing\n    secret: testing\n    use_ssl: false\n"
                      f"    client_kwargs: {{endpoint_url: '{moto_endpoint}', region_name: us-east-1}}\n")
    from flows.config import load_config

    lake_config = load_config(config).lake
    assert lake_config.storage_options["use_ssl"] is False
    lake = Lake(lake_config)
    lake.publish(lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", 2)))
    assert sdg_sql(config, "SELECT count(*) AS n FROM preferences") == [{"n": 2}]


def test_an_s3_lake_without_credentials_fails_the_run_before_any_work(tmp_path, moto_endpoint, monkeypatch):
    from tests.storage.conftest import make_bucket

    bucket = make_bucket(moto_endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to fall back on
    config = tmp_path / "run.yaml"
    config.write_text(f"lake:\n  root: s3://{bucket}/sdg\n  catalog: {tmp_path}/c.duckdb\n"
                      f"  storage_options: {{endpoint_url: '{moto_endpoint}'}}\n")
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 1, result.output
    assert "lake.storage_options: no S3 credentials" in result.output and "anon: true" in result.output
    assert not (tmp_path / "c.duckdb").exists()  # no run was started, nothing written
