"""`sdg sql` reads the catalog and the lake, and nothing else the process could (issue 15, section 3)."""

import datetime as dt
import json
import os
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from storage.catalog import Catalog, CatalogError, confine
from storage.config import LakeConfig
from storage.lake import Lake
from tests.storage.conftest import S3_KEYS, make_bucket, preference_rows

RUN_DATE = "2025-01-02"
README = Path(__file__).resolve().parents[2] / "README.md"


def sdg(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def sdg_sql(config_file, query):
    result = sdg("sql", "-c", config_file, "-f", "json", query)
    assert result.exit_code == 0, (query, result.output)
    return json.loads(result.stdout)


def assert_refused(config_file, catalog, query, secrets=()):
    result = sdg("sql", "-c", config_file, "-f", "json", query)
    assert result.exit_code == 1, (query, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no traceback
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "query refused" in text and "disabled by configuration" in text, (query, text)
    assert f"the catalog {catalog.path} and files under the lake root {catalog.lake_dir}" in text, text
    for secret in secrets:
        assert secret not in result.output, (query, secret)


def publish_preferences(lake, rows=3):
    staged = lake.stage_batch("preferences", RUN_DATE, "b-1", preference_rows("b-1", rows))
    lake.publish(staged)


def write_parquet(fs, path, value):
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"secret": [value]}), sink)
    fs.pipe_file(path, sink.getvalue().to_pybytes())


@pytest.fixture
def outside(lake_config, tmp_path):
    """Files the process can read that are not the lake's: local ones, and for an S3 lake other objects too."""
    files = {"local_parquet": tmp_path / "elsewhere" / "secret.parquet",
             "sibling": Path(str(tmp_path / "lake") + "2") / "published" / "secret.parquet"}  # lake2/: not under lake/
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"secret": ["local-secret"]}), path)
    urls = {name: str(path) for name, path in files.items()}
    lake = Lake(lake_config)
    if not lake.is_local:
        other = make_bucket(lake_config.storage_options["endpoint_url"])
        write_parquet(lake.fs, f"{other}/secret.parquet", "other-bucket-secret")
        sibling_prefix = lake.root + "2"  # s3://bucket/sdg2/: shares the prefix string, not the folder
        write_parquet(lake.fs, f"{sibling_prefix}/secret.parquet", "sibling-secret")
        urls.update(other_bucket=f"s3://{other}/secret.parquet", other_glob=f"s3://{other}/*.parquet",
                    sibling=f"s3://{sibling_prefix}/secret.parquet")
    return urls


def test_reads_outside_the_lake_are_refused(lake_config, config_file, outside):
    lake = Lake(lake_config)
    publish_preferences(lake)
    catalog = Catalog(lake_config, lake)
    secrets = ["local-secret", "other-bucket-secret", "sibling-secret", "root:x:0:0"]  # /etc/passwd's first line
    if os.path.exists("/etc/hostname") and len(Path("/etc/hostname").read_text().strip()) >= 6:
        secrets.append(Path("/etc/hostname").read_text().strip())
    refused = [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
        "SELECT content FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM read_parquet('{outside['local_parquet']}')",
        f"SELECT * FROM read_parquet('{Path(outside['local_parquet']).parent}/*.parquet')",
        f"SELECT * FROM read_parquet('{outside['sibling']}')",
        f"SELECT * FROM read_parquet('{catalog.lake_dir}../elsewhere/secret.parquet')",  # '..' out of the lake
        f"SELECT * FROM read_parquet('{catalog.lake_dir}published/../../elsewhere/secret.parquet')",
        "SELECT * FROM read_csv('https://example.com/data.csv')",
        "SELECT * FROM read_xlsx('/tmp/book.xlsx')",  # an extension DuckDB would install and load
    ]
    if not lake.is_local:
        refused += [f"SELECT * FROM read_parquet('{outside['other_bucket']}')",
                    f"SELECT * FROM read_parquet('{outside['other_glob']}')",
                    f"SELECT * FROM glob('{outside['other_glob']}')"]
    for query in refused:
        assert_refused(config_file, catalog, query, secrets)
    # the lake itself still reads, views and paths alike
    assert sdg_sql(config_file, "SELECT count(*) AS n FROM preferences") == [{"n": 3}]
    direct = f"SELECT count(*) AS n FROM read_parquet('{lake.published_glob('preferences')}')"
    assert sdg_sql(config_file, direct) == [{"n": 3}]


def test_a_symlink_in_the_lake_does_not_lead_out_of_it(tmp_path):
    config = LakeConfig(root=str(tmp_path / "lake"))
    catalog = Catalog(config)
    secret = tmp_path / "secret.csv"
    secret.write_text("a\nsecret-value\n")
    (tmp_path / "lake" / "published" / "link.csv").symlink_to(secret)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"lake": config.model_dump()}))
    assert_refused(config_file, catalog, f"SELECT * FROM read_csv('{catalog.lake_dir}published/link.csv')",
                   ["secret-value"])


def test_the_confinement_cannot_be_undone(tmp_path):
    catalog = Catalog(LakeConfig(root=str(tmp_path / "lake")))
    catalog.refresh_views()
    conn = duckdb.connect(catalog.path, read_only=True)
    try:
        confine(conn, catalog.lake_dir, catalog.path)
        for statement in ["SET enable_external_access = true", "SET allowed_directories = ['/']",
                          "SET allowed_paths = ['/etc/passwd']", "RESET allowed_directories",
                          "SET lock_configuration = false", "SET disabled_filesystems = ''"]:
            with pytest.raises(duckdb.Error, match="configuration has been locked"):
                conn.execute(statement)
        for statement in ["INSTALL httpfs", "LOAD httpfs", "SELECT * FROM read_text('/etc/hostname')"]:
            with pytest.raises(duckdb.Error, match="disabled (by|through) configuration"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # the catalog itself reads
    finally:
        conn.close()
    # and the command refuses the statements before they reach DuckDB
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"lake": catalog.config.model_dump()}))
    for statement in ["SET enable_external_access = true", "SET allowed_directories = ['/']", "LOAD httpfs"]:
        result = sdg("sql", "-c", config_file, statement)
        assert result.exit_code == 1 and "only queries are allowed" in result.output, (statement, result.output)


def test_queries_share_a_confined_database_in_one_process(tmp_path):
    # DuckDB hands every connection to one file in a process the same database, settings and all:
    # a second query while the first is open must find it confined, not fail to confine it again.
    config = LakeConfig(root=str(tmp_path / "lake"))
    catalog = Catalog(config)
    publish_preferences(catalog.lake)
    catalog.refresh_views()
    first = duckdb.connect(catalog.path, read_only=True)
    try:
        confine(first, catalog.lake_dir, catalog.path)
        assert catalog.query("SELECT count(*) AS n FROM preferences").to_pylist() == [{"n": 3}]
        with pytest.raises(CatalogError, match="query refused"):
            catalog.query("SELECT * FROM read_csv('/etc/passwd')")
    finally:
        first.close()


def documented_queries() -> list[str]:
    queries = re.findall(r'sdg sql -c \S+ "([^"]+)"', README.read_text())
    assert len(queries) >= 6, queries  # the README still documents its queries this way
    return list(dict.fromkeys(queries))


def prompt_rows(count):
    created = dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)
    return [{"id": f"prompt-{i}", "task_type": ("math", "chat")[i % 2],
             "messages": [{"role": "user", "content": f"{i}?"}], "reference_answer": str(i), "source": "synthetic",
             "run_id": "run-1", "batch_id": "p-1", "stage": "prompts", "created_at": created} for i in range(count)]


def dialogue_row():
    scores = {"helpfulness": 3.0, "correctness": 3.0, "coherence": 3.0, "complexity": 1.0, "verbosity": 2.0}
    return {"id": "dialogue-1", "prompt_id": "prompt-0", "persona": "terse-engineer", "source": "role_play",
            "messages": [{"role": "user", "content": "0?"}, {"role": "assistant", "content": "Zero."}],
            "turn_attributes": [scores], "turn_rewards": [2.5], "reward": 2.5, "run_id": "run-1", "batch_id": "d-1",
            "stage": "dialogues", "created_at": dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)}


def test_every_documented_query_still_runs(tmp_path):
    config = LakeConfig(root=str(tmp_path / "lake"))
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"lake": config.model_dump()}))
    lake = Lake(config)
    catalog = Catalog(config, lake)
    lake.publish(lake.stage_batch("prompts", RUN_DATE, "p-1", prompt_rows(4)))
    publish_preferences(lake)
    catalog.record_usage("run-1", "a", "fake", {"requests": 2, "prompt_tokens": 10, "completion_tokens": 5})
    catalog.record_judges("run-1", [{"judge": "ground_truth", "decided": 3, "passed": 3, "trusted": True}])
    lake.publish(lake.stage_batch("dialogues", RUN_DATE, "d-1", [dialogue_row()]))
    catalog.record_step_drops("run-1", "dialogues", "role-play-00000", {"low_turn_reward": 1})
    catalog.refresh_views()

    for query in documented_queries():
        assert sdg_sql(config_file, query), query  # runs, and finds the rows landed above
    for args in (["datasets"], ["catalog", "refresh"],
                 ["export", "preferences", "--format", "trl-dpo", "--out", tmp_path / "dpo.jsonl"]):
        result = sdg(*args, "-c", config_file)
        assert result.exit_code == 0, (args, result.output)
    assert len((tmp_path / "dpo.jsonl").read_text().splitlines()) == 3
    # lake files other than the views' (a quarantine report, say) are the lake's too
    staged = lake.stage_batch("preferences", RUN_DATE, "b-9", preference_rows("b-9", 1))
    report = lake.write_report("quarantine", staged, {"failed": ["dedup"]})
    assert sdg_sql(config_file, f"SELECT failed FROM read_json('{report}')") == [{"failed": ["dedup"]}]
    assert_refused(config_file, catalog, "SELECT * FROM read_csv('/etc/passwd')")


def test_documented_queries_on_an_s3_lake(tmp_path, moto_endpoint):
    bucket = make_bucket(moto_endpoint)
    config = LakeConfig(root=f"s3://{bucket}/sdg", catalog=str(tmp_path / "catalog.duckdb"),
                        storage_options={"endpoint_url": moto_endpoint, **S3_KEYS})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"lake": config.model_dump()}))
    lake = Lake(config)
    publish_preferences(lake)
    rows = sdg_sql(config_file, "SELECT judge, count(*), avg(margin) FROM preferences GROUP BY ALL")
    assert [row["judge"] for row in rows] == ["ground_truth"]
    glob = lake.published_glob("preferences")
    assert glob.startswith(f"s3://{bucket}/sdg/published/")
    assert sdg_sql(config_file, f"SELECT count(*) AS n FROM read_parquet('{glob}')") == [{"n": 3}]
    assert_refused(config_file, Catalog(config, lake), "SELECT content FROM read_text('/etc/hostname')")
