"""The catalog's SQL, as named constants: values are always bound parameters.

The only text that is not a bound value: dataset names (from the DATASETS allow-list) and the
published glob (built by the lake from its own configured root, quoted as a SQL string literal),
because DuckDB views cannot take parameters.
"""

from __future__ import annotations

import pyarrow as pa

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, name VARCHAR, config_fingerprint VARCHAR, status VARCHAR,
    started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, seconds DOUBLE);
CREATE TABLE IF NOT EXISTS batches (
    batch_id VARCHAR PRIMARY KEY, dataset VARCHAR, run_id VARCHAR, run_date DATE, state VARCHAR,
    rows BIGINT, bytes BIGINT, url VARCHAR, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS gate_results (
    batch_id VARCHAR, expectation VARCHAR, success BOOLEAN, observed VARCHAR, threshold VARCHAR,
    details VARCHAR);
CREATE TABLE IF NOT EXISTS drops (
    run_id VARCHAR, stage VARCHAR, step VARCHAR, dataset VARCHAR, batch_id VARCHAR, reason VARCHAR, count BIGINT);
CREATE TABLE IF NOT EXISTS judges (
    run_id VARCHAR, judge VARCHAR, decided BIGINT, passed BIGINT, dropped BIGINT, trusted BOOLEAN,
    calibration_accuracy DOUBLE, trust_reason VARCHAR, agreement_with_reward DOUBLE, agreement_pairs BIGINT,
    position_bias_rate DOUBLE, PRIMARY KEY (run_id, judge));
CREATE TABLE IF NOT EXISTS calibrations (
    judge VARCHAR, model_fingerprint VARCHAR, pairs_fingerprint VARCHAR, pairs BIGINT, accuracy DOUBLE,
    per_subset VARCHAR, measured_at TIMESTAMPTZ, PRIMARY KEY (judge, model_fingerprint, pairs_fingerprint));
CREATE TABLE IF NOT EXISTS usage (
    run_id VARCHAR, model VARCHAR, backend VARCHAR, requests BIGINT, prompt_tokens BIGINT,
    completion_tokens BIGINT, errors BIGINT, seconds DOUBLE, PRIMARY KEY (run_id, model, backend));
"""

UPSERT_RUN_START = """
INSERT INTO runs (run_id, name, config_fingerprint, status, started_at, finished_at, seconds)
VALUES (?, ?, ?, 'running', ?, NULL, NULL)
ON CONFLICT (run_id) DO UPDATE SET name = excluded.name, config_fingerprint = excluded.config_fingerprint,
    status = 'running', started_at = excluded.started_at, finished_at = NULL, seconds = NULL
"""

FINISH_RUN = """
UPDATE runs SET status = ?, finished_at = ?, seconds = date_diff('microsecond', started_at, ?) / 1e6
WHERE run_id = ?
"""

# A re-landed batch replaces its row: retries never count a batch twice. The new rows come as
# one registered Arrow table (`new_batches`, one row per batch id): a bulk insert, not a statement per row.
UPSERT_BATCHES = """
INSERT INTO batches (batch_id, dataset, run_id, run_date, state, rows, bytes, url, updated_at)
SELECT batch_id, dataset, run_id, CAST(run_date AS DATE), state, rows, bytes, url, updated_at FROM new_batches
ON CONFLICT (batch_id) DO UPDATE SET dataset = excluded.dataset, run_id = excluded.run_id,
    run_date = excluded.run_date, state = excluded.state, rows = excluded.rows, bytes = excluded.bytes,
    url = excluded.url, updated_at = excluded.updated_at
"""

DELETE_GATE_RESULTS = "DELETE FROM gate_results WHERE batch_id = ?"
INSERT_GATE_RESULT = "INSERT INTO gate_results VALUES (?, ?, ?, ?, ?, ?)"

# The drop ledger: one row per (run, stage, step, batch, reason). Generation drops belong to a step
# and no batch (batch_id and dataset NULL); gate drops to the step 'gate' and their batch. Recording
# a step or batch again replaces its rows, so retries and reruns never count a drop twice.
DELETE_GATE_DROPS = "DELETE FROM drops WHERE run_id = ? AND step = 'gate' AND batch_id = ?"
DELETE_STEP_DROPS = "DELETE FROM drops WHERE run_id = ? AND stage = ? AND step = ? AND batch_id IS NULL"
INSERT_DROP = "INSERT INTO drops (run_id, stage, step, dataset, batch_id, reason, count) VALUES (?, ?, ?, ?, ?, ?, ?)"
# Catalogs written before the ledger had a step: keep their counts under the new columns.
OLD_DROPS_LAYOUT = "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'drops' AND column_name = 'step'"
MIGRATE_DROPS = """
ALTER TABLE drops RENAME TO drops_before_ledger;
CREATE TABLE drops (
    run_id VARCHAR, stage VARCHAR, step VARCHAR, dataset VARCHAR, batch_id VARCHAR, reason VARCHAR, count BIGINT);
INSERT INTO drops SELECT run_id,
    CASE WHEN stage LIKE 'gate:%' THEN NULL ELSE stage END,
    CASE WHEN stage LIKE 'gate:%' THEN 'gate' ELSE regexp_extract(batch_id, '^[^-]+-(.*)-generation$', 1) END,
    CASE WHEN stage LIKE 'gate:%' THEN substr(stage, 6) ELSE NULL END,
    CASE WHEN stage LIKE 'gate:%' THEN batch_id ELSE NULL END, reason, count
FROM drops_before_ledger;
DROP TABLE drops_before_ledger;
"""

UPSERT_JUDGE = """
INSERT INTO judges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, judge) DO UPDATE SET decided = excluded.decided, passed = excluded.passed,
    dropped = excluded.dropped, trusted = excluded.trusted, calibration_accuracy = excluded.calibration_accuracy,
    trust_reason = excluded.trust_reason, agreement_with_reward = excluded.agreement_with_reward,
    agreement_pairs = excluded.agreement_pairs, position_bias_rate = excluded.position_bias_rate
"""
UPSERT_CALIBRATION = """
INSERT INTO calibrations VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (judge, model_fingerprint, pairs_fingerprint) DO UPDATE SET pairs = excluded.pairs,
    accuracy = excluded.accuracy, per_subset = excluded.per_subset, measured_at = excluded.measured_at
"""
FIND_CALIBRATION = """
SELECT pairs, accuracy, per_subset FROM calibrations WHERE judge = ? AND model_fingerprint = ? AND pairs_fingerprint = ?
"""

# Usage accumulates: each call reports what a batch's requests cost.
ADD_USAGE = """
INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, model, backend) DO UPDATE SET requests = usage.requests + excluded.requests,
    prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = usage.completion_tokens + excluded.completion_tokens,
    errors = usage.errors + excluded.errors, seconds = usage.seconds + excluded.seconds
"""

EMPTY_TABLE_PREFIX = "_empty_"

def dataset_counts(datasets: tuple[str, ...]) -> str:
    # Names come from the DATASETS allow-list, never from the caller.
    parts = [
        f"SELECT '{name}' AS dataset, CAST(run_date AS VARCHAR) AS run_date, count(*) AS rows "
        f'FROM "{name}" GROUP BY ALL'
        for name in datasets
    ]
    return " UNION ALL ".join(parts) + " ORDER BY dataset, run_date"


def sql_string(text: str) -> str:
    """A SQL string literal: single quotes doubled (for the configured glob only, never user input)."""
    return "'" + text.replace("'", "''") + "'"


def view_over_parquet(dataset: str, glob: str) -> str:
    # No union_by_name: every batch file has the dataset's exact schema (storage.schemas.conform),
    # and union_by_name reads the footer of every file at each query (0.2 s per 1,000 files here).
    # DuckDB matches columns by name and binds to the first file's; a release that adds a column
    # to a schema must bring union_by_name back or rewrite the older files.
    return (
        f'CREATE OR REPLACE VIEW "{dataset}" AS SELECT * FROM read_parquet({sql_string(glob)}, '
        "hive_partitioning = true, hive_types = {'dataset': VARCHAR, 'run_date': DATE})"
    )


def view_over_empty(dataset: str) -> str:
    return f'CREATE OR REPLACE VIEW "{dataset}" AS SELECT * FROM "{EMPTY_TABLE_PREFIX}{dataset}"'


def duckdb_type(type_: pa.DataType) -> str:
    """The DuckDB type of an Arrow type of our schemas (names come from the schemas, not from users)."""
    if pa.types.is_list(type_):
        return duckdb_type(type_.value_type) + "[]"
    if pa.types.is_struct(type_):
        return "STRUCT(" + ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in type_) + ")"
    if pa.types.is_timestamp(type_):
        return "TIMESTAMPTZ" if type_.tz else "TIMESTAMP"
    return _SCALARS[type_]


_SCALARS = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
            pa.bool_(): "BOOLEAN"}


def create_empty_table(dataset: str, schema: pa.Schema) -> str:
    # The view of a dataset with nothing published yet: typed, so queries bind before the first batch.
    columns = [f'"{f.name}" {duckdb_type(f.type)}' for f in schema]
    columns += ['"dataset" VARCHAR', '"run_date" DATE']
    return f'CREATE OR REPLACE TABLE "{EMPTY_TABLE_PREFIX}{dataset}" ({", ".join(columns)})'
