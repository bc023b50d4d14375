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
    run_id VARCHAR, batch_id VARCHAR, stage VARCHAR, reason VARCHAR, count BIGINT,
    PRIMARY KEY (run_id, batch_id, stage, reason));
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

UPSERT_DROP = """
INSERT INTO drops (run_id, batch_id, stage, reason, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (run_id, batch_id, stage, reason) DO UPDATE SET count = excluded.count
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
