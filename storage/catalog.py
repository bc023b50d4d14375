"""The DuckDB catalog beside the lake: a view per dataset over published Parquet, plus the
tables that say what each run produced and what it cost (runs, batches, gate_results, drops,
usage).

Where it lives: `LakeConfig.catalog` if set; otherwise `<root>/catalog.duckdb` for a local lake.
An s3:// lake needs `catalog` set (DuckDB writes a local file; guessing a folder for it would
scatter catalogs across working directories).

DuckDB allows one writing process per file. Every write holds an exclusive fcntl lock on a
sidecar `<catalog>.lock`, readers a shared one, and opening retries while another process that
does not use our lock holds the file. `writing()` keeps one connection and one transaction for
many records, which is how bulk landings stay cheap.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from storage import catalog_sql as q
from storage.config import LakeConfig
from storage.lake import Lake, LakeError, StagedBatch, check_batch_id
from storage.schemas import DATASETS, SCHEMAS

BATCH_STATES = ("staged", "published", "quarantined")
LOCK_TIMEOUT_S = 120.0
BATCH_ROWS = pa.schema([("batch_id", pa.string()), ("dataset", pa.string()), ("run_id", pa.string()),
                        ("run_date", pa.string()), ("state", pa.string()), ("rows", pa.int64()),
                        ("bytes", pa.int64()), ("url", pa.string()), ("updated_at", pa.timestamp("us", tz="UTC"))])
NO_FILES = "No files found that match the pattern"  # DuckDB's error for a glob with no file
OUTSIDE = "disabled by configuration"  # DuckDB's error for a file, URL or extension a confined query may not reach
USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "errors", "seconds")


class CatalogError(RuntimeError):
    pass


class _StaleViews(Exception):
    """A query met a view whose files are gone, or a dataset with no view yet."""


def catalog_path(config: LakeConfig) -> str:
    if config.catalog:
        return os.path.abspath(config.catalog)
    if "://" in config.root and not config.root.startswith("file://"):
        raise CatalogError(
            f"lake {config.root!r} is not a local folder: set lake.catalog to a local DuckDB file path"
        )
    return os.path.abspath(os.path.join(config.root.removeprefix("file://"), "catalog.duckdb"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@contextmanager
def _file_lock(path: str, exclusive: bool, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CatalogError(f"catalog lock {path} still held by another process after {timeout_s:.0f}s") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _connect(path: str, read_only: bool, timeout_s: float = LOCK_TIMEOUT_S) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            # Another process (a user's duckdb shell, say) holds the file: wait for it.
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise CatalogError(f"catalog {path} cannot be opened: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Catalog:
    def __init__(self, config: LakeConfig, lake: Lake | None = None):
        self.config = config
        self.path = catalog_path(config)
        self.lock_path = self.path + ".lock"
        self.lake = lake or Lake(config)
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._tables_checked = False
        self.lake_dir = self.lake.url(self.lake.root) + "/"  # what queries may read besides the catalog

    def __getstate__(self) -> dict[str, Any]:
        """A catalog travels (to the gate worker, to Dask workers) without the connection of a write in
        progress: that belongs to this process and its open transaction. Another thread may pickle a
        run's catalog while the event loop writes."""
        return {**self.__dict__, "_conn": None}

    # -- connections -----------------------------------------------------------------------
    def _prepare(self, conn: duckdb.DuckDBPyConnection) -> None:
        if not self.lake.is_local:
            conn.register_filesystem(self.lake.fs)  # s3 through s3fs: no httpfs download needed

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One locked connection and one transaction for every write inside the block."""
        if self._conn is not None:  # nested: join the open transaction
            yield self._conn
            return
        with _file_lock(self.lock_path, exclusive=True):
            conn = _connect(self.path, read_only=False)
            try:
                self._prepare(conn)
                conn.execute(q.CREATE_TABLES)
                if not self._tables_checked:
                    if not conn.execute(q.OLD_DROPS_LAYOUT).fetchone()[0]:
                        conn.execute(q.MIGRATE_DROPS)
                    self._tables_checked = True
                conn.begin()
                self._conn = conn
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._conn = None
                conn.close()

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run one SELECT (or EXPLAIN of one) on a read-only connection.

        A read-only connection protects only the catalog file: COPY ... TO, EXPORT, ATTACH or SET
        would still write files elsewhere (into published/, say), so anything but a query is refused,
        and `confine` keeps the query from reading files outside the lake.
        """
        check_read_only(sql)
        if not os.path.exists(self.path):
            self.refresh_views()  # first use: create the tables and views so queries have names to bind
        try:
            return self._read(sql, params)
        except _StaleViews:
            # The views lag the lake: a dataset's last published batch went away (quarantined on a
            # rerun, say), or the catalog was written before any view was made. Remake them, ask again.
            self.refresh_views()
        try:
            return self._read(sql, params)
        except _StaleViews as exc:
            raise CatalogError(f"query failed: {exc}") from None

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> pa.Table:
        with _file_lock(self.lock_path, exclusive=False):
            conn = _connect(self.path, read_only=True)
            try:
                self._prepare(conn)
                confine(conn, self.lake_dir, self.path)
                relation = conn.sql(sql, params=params)
                return pa.table({}) if relation is None else relation.to_arrow_table()
            except duckdb.Error as exc:
                text = str(exc)
                if NO_FILES in text or any(f"Table with name {name} does not exist" in text for name in DATASETS):
                    raise _StaleViews(text) from None
                if isinstance(exc, duckdb.PermissionException) or OUTSIDE in text:
                    raise CatalogError(f"query refused: {exc}\nqueries read only the catalog {self.path} "
                                       f"and files under the lake root {self.lake_dir}") from None
                raise CatalogError(f"query failed: {exc}") from None
            finally:
                conn.close()

    # -- writes ----------------------------------------------------------------------------
    def record_run(self, run_id: str, name: str, fingerprint: str, started_at: dt.datetime | None = None) -> None:
        with self.writing() as conn:
            conn.execute(q.UPSERT_RUN_START, [run_id, name, fingerprint, started_at or _now()])

    def finish_run(self, run_id: str, status: str = "completed", finished_at: dt.datetime | None = None) -> None:
        finished = finished_at or _now()
        with self.writing() as conn:
            conn.execute(q.FINISH_RUN, [status, finished, finished, run_id])

    def record_batch(self, staged: StagedBatch, state: str, run_id: str | None = None, url: str | None = None) -> None:
        self.record_batches([(staged, state, run_id, url)])

    def record_batches(self, items: Sequence[tuple[StagedBatch, str, str | None, str | None]]) -> None:
        """Upsert many batches in one bulk insert: (staged, state, run_id, url or None for staged.url)."""
        latest: dict[str, dict[str, Any]] = {}  # one row per batch id: the last state given wins
        now = _now()
        for staged, state, run_id, url in items:
            if state not in BATCH_STATES:
                raise CatalogError(f"batch state {state!r} is not one of {', '.join(BATCH_STATES)}")
            latest[staged.batch_id] = {
                "batch_id": staged.batch_id, "dataset": staged.dataset, "run_id": run_id, "run_date": staged.run_date,
                "state": state, "rows": staged.rows, "bytes": staged.bytes, "url": url or staged.url, "updated_at": now}
        if not latest:
            return
        new_batches = pa.Table.from_pylist(list(latest.values()), schema=BATCH_ROWS)
        published = sorted({row["dataset"] for row in latest.values() if row["state"] == "published"})
        with self.writing() as conn:
            conn.register("new_batches", new_batches)
            try:
                conn.execute(q.UPSERT_BATCHES)
            finally:
                conn.unregister("new_batches")
            for dataset in published:  # a dataset's first batch: its view still reads the empty table
                if self._view_is_empty(conn, dataset) and self._has_published(dataset):
                    conn.execute(q.view_over_parquet(dataset, self.lake.published_glob(dataset)))

    @staticmethod
    def _view_is_empty(conn: duckdb.DuckDBPyConnection, dataset: str) -> bool:
        found = conn.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [dataset]).fetchone()
        return found is None or "read_parquet" not in found[0]

    def record_gate_results(self, batch: str, results: Sequence[Mapping[str, Any]]) -> None:
        """Replace a batch's gate results; each has expectation, success, observed, threshold, details."""
        check_batch_id(batch)
        rows = [
            [batch, str(r["expectation"]), bool(r["success"]), _text(r.get("observed")),
             _text(r.get("threshold")), _text(r.get("details"))]
            for r in results
        ]
        with self.writing() as conn:
            conn.execute(q.DELETE_GATE_RESULTS, [batch])
            if rows:
                conn.executemany(q.INSERT_GATE_RESULT, rows)

    def record_step_drops(self, run_id: str, stage: str, step: str, counts: Mapping[str, int]) -> None:
        """The drop ledger for a generation step: what it dropped, per reason (replacing an earlier record)."""
        rows = [[run_id, stage, step, None, None, reason, int(n)] for reason, n in counts.items()]
        with self.writing() as conn:
            conn.execute(q.DELETE_STEP_DROPS, [run_id, stage, step])
            if rows:
                conn.executemany(q.INSERT_DROP, rows)

    def record_gate_drops(self, run_id: str, stage: str | None, dataset: str, batch: str,
                          counts: Mapping[str, int]) -> None:
        """The drop ledger for one gated batch (replacing what an earlier landing of it recorded)."""
        rows = [[run_id, stage, "gate", dataset, batch, reason, int(n)] for reason, n in counts.items()]
        with self.writing() as conn:
            conn.execute(q.DELETE_GATE_DROPS, [run_id, batch])
            if rows:
                conn.executemany(q.INSERT_DROP, rows)

    def record_judges(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """The judge report of a run: one row per judge (see storage.catalog_sql.CREATE_TABLES)."""
        columns = ("judge", "decided", "passed", "dropped", "trusted", "calibration_accuracy", "trust_reason",
                   "agreement_with_reward", "agreement_pairs", "position_bias_rate")
        with self.writing() as conn:
            for row in rows:
                conn.execute(q.UPSERT_JUDGE, [run_id, *(row.get(c) for c in columns)])

    def find_calibration(self, judge: str, model_fingerprint: str, pairs_fingerprint: str) -> dict | None:
        with self.writing() as conn:
            found = conn.execute(q.FIND_CALIBRATION, [judge, model_fingerprint, pairs_fingerprint]).fetchone()
        if found is None:
            return None
        return {"pairs": found[0], "accuracy": found[1], "per_subset": json.loads(found[2])}

    def record_calibration(self, judge: str, model_fingerprint: str, pairs_fingerprint: str, report: Mapping) -> None:
        with self.writing() as conn:
            conn.execute(q.UPSERT_CALIBRATION, [judge, model_fingerprint, pairs_fingerprint, report["pairs"],
                                                report["accuracy"], json.dumps(report["per_subset"]), _now()])

    def record_usage(self, run_id: str, model: str, backend: str, usage: Any) -> None:
        """Add what some requests cost; `usage` is an engines Usage or a mapping with the same fields."""
        get = usage.get if isinstance(usage, Mapping) else lambda name, default=0: getattr(usage, name, default)
        values = [get(name, 0) or 0 for name in USAGE_FIELDS]
        with self.writing() as conn:
            conn.execute(q.ADD_USAGE, [run_id, model, backend, *values])

    def refresh_views(self) -> None:
        """Point each dataset's view at its published Parquet (an empty typed view until there is some)."""
        with self.writing() as conn:
            for dataset in DATASETS:
                conn.execute(q.create_empty_table(dataset, SCHEMAS[dataset]))
                has_files = self._has_published(dataset)
                conn.execute(q.view_over_parquet(dataset, self.lake.published_glob(dataset)) if has_files
                             else q.view_over_empty(dataset))

    def _has_published(self, dataset: str) -> bool:
        # DuckDB refuses a view over a glob that matches nothing, and a failed statement would abort
        # the whole transaction, so look first.
        pattern = self.lake.published_glob(dataset)
        if self.lake.is_local:
            return next(glob.iglob(pattern), None) is not None  # stops at the first file
        return bool(self.lake.fs.glob(pattern.split("://", 1)[-1]))

    def dataset_counts(self) -> pa.Table:
        """Published rows per dataset and run date, counted from the views themselves."""
        return self.query(q.dataset_counts(DATASETS))


def confine(conn: duckdb.DuckDBPyConnection, lake_dir: str, catalog: str) -> None:
    """Let a query connection read the catalog and files under `lake_dir`, and nothing else.

    The statement guard keeps queries from writing; without this, a query would still read anything
    the process can (read_csv('/etc/passwd'), read_text, a glob, another bucket, a URL, Python
    variables by name) and load extensions. DuckDB's own settings confine it, on local and s3 paths
    alike (it resolves `..` and symlinks first), and the lock refuses a SET that would undo them.
    DuckDB keeps the open database's own files (WAL, temp folder) reachable.
    """
    [(locked, external, allowed)] = conn.execute(
        "SELECT current_setting('lock_configuration'), current_setting('enable_external_access'), "
        "current_setting('allowed_directories')").fetchall()
    if locked:
        # Another query of this process holds the same database instance, confined already.
        if external or lake_dir not in allowed:
            raise CatalogError(f"catalog {catalog} is open elsewhere in this process without the lake's confinement")
        return
    conn.execute("SET allowed_directories = ?", [[lake_dir]])
    conn.execute("SET allowed_paths = ?", [[catalog]])
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")


def check_read_only(sql: str) -> None:
    """Refuse SQL that is not exactly one SELECT (SHOW, DESCRIBE and SUMMARIZE are SELECTs) or EXPLAIN of one."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise CatalogError(f"query failed: {exc}") from None
    if len(statements) != 1:
        raise CatalogError(f"give exactly one SQL statement, not {len(statements)}")
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs its statement: that must be a SELECT too
        inner = re.sub(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", "", statement.query, flags=re.IGNORECASE)
        kind = duckdb.extract_statements(inner)[0].type if inner.strip() else kind
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        name = name if kind == statement.type else f"EXPLAIN of {name}"
        raise CatalogError(f"only queries are allowed here (SELECT, WITH, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN); got {name}")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


__all__ = ["Catalog", "CatalogError", "catalog_path", "confine", "BATCH_STATES", "LakeError"]
