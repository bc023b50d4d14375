"""The gate: staged batch -> published | quarantined, with a report that explains the verdict.

Row-level rules (low reward, duplicates) remove rows before publishing; the dropped rows are
written to <root>/drops/dataset=<name>/run_date=<date>/<batch>.parquet with their reason.
Batch-level rules (GE expectations, acceptance rate, mean reward, empty batch) quarantine the
whole batch. Every input row ends published, dropped with a reason, or quarantined.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quality import dedup
from quality.artifacts import publish_artifacts
from quality.config import GateConfig, QualityConfig
from quality.expectations import validate
from quality.frames import DEDUP_SCOPE, DEDUP_TEXT, flatten
from quality.reward_gate import batch_reward_limits, low_reward_reasons, reward_statistics
from storage.lake import Lake, StagedBatch


@dataclass
class Evaluation:
    """What the gate found in a batch, before anything moves."""

    frame: pd.DataFrame
    reasons: pd.Series  # None = keep, else the drop reason
    duplicate_of: pd.Series  # the id a duplicate repeats (a batch row's id or a published id)
    checks: list[dict[str, Any]]
    ge_result: dict
    prints: dedup.Fingerprints | None = None

    @property
    def kept(self) -> np.ndarray:
        return self.reasons.isna().to_numpy()

    @property
    def passed(self) -> bool:
        return all(c["success"] for c in self.checks)

    def drop_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.reasons.dropna().value_counts().sort_index().items()}


@dataclass
class GateReport:
    dataset: str
    batch_id: str
    run_id: str
    run_date: str
    state: str  # published | quarantined
    rows_in: int
    rows_out: int
    drops: dict[str, int]
    checks: list[dict[str, Any]]
    reward: dict[str, Any]
    url: str = ""
    stage: str | None = None  # the stage that landed the batch (its rows' `stage`)
    report_url: str = ""
    dropped_rows_url: str = ""
    forced_reason: str | None = None
    mix: list[dict[str, Any]] = field(default_factory=list)  # published rows per task type and topic
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    great_expectations: dict = field(default_factory=dict, repr=False)

    @property
    def failed(self) -> list[str]:
        return [c["expectation"] for c in self.checks if not c["success"]]

    def summary(self) -> dict[str, Any]:
        """The verdict in a few fields: what flows pass on and print."""
        return {"dataset": self.dataset, "batch_id": self.batch_id, "state": self.state, "rows_in": self.rows_in,
                "rows_out": self.rows_out, "drops": self.drops, "failed": self.failed, "url": self.url,
                "report_url": self.report_url, "mix": self.mix}

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"failed": self.failed}


class _Stopwatch(dict):
    """Seconds per gate step, kept in the report: a slow gate says where its time went."""

    def __init__(self):
        super().__init__()
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self[step] = round(self.get(step, 0.0) + now - self._last, 4)
        self._last = now


def _mark(reasons: np.ndarray, duplicate_of: np.ndarray, found: dict, ids: np.ndarray | None = None) -> None:
    if found:
        rows = np.fromiter(found, dtype=np.int64, count=len(found))
        reasons[rows] = [reason for reason, _ in found.values()]
        others = [other for _, other in found.values()]
        duplicate_of[rows] = ids[np.asarray(others)] if ids is not None else others


def evaluate(dataset: str, table: pa.Table, config: GateConfig, lake: Lake | None = None,
             batch_id: str | None = None, timings: _Stopwatch | None = None) -> Evaluation:
    """Score and check a batch (pure but for reading published signatures when a lake is given)."""
    watch = timings if timings is not None else _Stopwatch()
    frame, texts = flatten(dataset, table)
    watch.lap("flatten")
    reasons = low_reward_reasons(frame, config).to_numpy(dtype=object, copy=True)
    duplicate_of = np.full(len(frame), None, dtype=object)
    watch.lap("reward_gate")
    prints = None
    if (config.exact_dedup or config.near_dedup) and len(frame):
        text = texts[DEDUP_TEXT[dataset]]
        scope = DEDUP_SCOPE.get(dataset)
        prints = dedup.fingerprint(text, config, table.column(scope).combine_chunks() if scope else None)
        watch.lap("fingerprints")
        rows = np.flatnonzero(pd.isna(reasons))  # a low-reward row never stands for its group
        _mark(reasons, duplicate_of, dedup.duplicates_within(text, prints, rows, config), frame["id"].to_numpy())
        watch.lap("dedup_within_batch")
        if lake is not None and config.dedup_against_published:
            rows = np.flatnonzero(pd.isna(reasons))
            _mark(reasons, duplicate_of, dedup.duplicates_of_published(lake, dataset, batch_id, prints, rows, config))
            watch.lap("dedup_against_published")
    reasons, duplicate_of = pd.Series(reasons, dtype=object), pd.Series(duplicate_of, dtype=object)
    frame["accepted"] = reasons.isna().astype(float)
    checks, ge_result = validate(dataset, frame, config)
    kept = reasons.isna().to_numpy()
    checks += [limit.as_record() for limit in batch_reward_limits(frame, kept, config)]
    watch.lap("expectations")
    return Evaluation(frame, reasons, duplicate_of, checks, ge_result, prints)


def _dropped_path(lake: Lake, staged: StagedBatch) -> str:
    return f"{lake.root}/drops/dataset={staged.dataset}/run_date={staged.run_date}/{staged.batch_id}.parquet"


def _remove_dropped(lake: Lake, staged: StagedBatch) -> None:
    if lake.fs.exists(_dropped_path(lake, staged)):
        lake.fs.rm(_dropped_path(lake, staged))


def _write_dropped(lake: Lake, staged: StagedBatch, table: pa.Table, evaluation: Evaluation) -> str:
    """The dropped rows, whole, with their reason: outside published/, so readers never see them."""
    rows = np.flatnonzero(~evaluation.kept)
    dropped = table.take(pa.array(rows))
    dropped = dropped.append_column("drop_reason", pa.array(evaluation.reasons.iloc[rows].tolist(), pa.string()))
    dropped = dropped.append_column("duplicate_of", pa.array(evaluation.duplicate_of.iloc[rows].tolist(), pa.string()))
    path = _dropped_path(lake, staged)
    if lake.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with lake.fs.open(path, "wb") as handle:
        pq.write_table(dropped, handle, compression="zstd")
    return lake.url(path)


def _report_url(lake: Lake, area: str, staged: StagedBatch) -> str:
    # where Lake.write_report puts it: beside the batch, same name, .report.json
    path = lake.batch_path(area, staged.dataset, staged.run_date, staged.batch_id)
    return lake.url(path[: -len(".parquet")] + ".report.json")


def _gate_config(config: GateConfig | QualityConfig, dataset: str) -> GateConfig:
    return config.for_dataset(dataset) if isinstance(config, QualityConfig) else config


def run_gate(lake: Lake, catalog: Any, staged: StagedBatch, config: GateConfig | QualityConfig, run_id: str,
             force_reason: str | None = None, artifacts: bool = True) -> GateReport:
    """Validate a staged batch and publish it (minus dropped rows) or quarantine it, with its report.

    `force_reason` publishes despite failed batch-level checks (row-level drops still apply);
    the reason is kept in the report and in the catalog's gate results. `artifacts=False` leaves
    the Prefect artifacts to an async caller (quality.artifacts.apublish_artifacts).
    """
    started = time.perf_counter()
    watch = _Stopwatch()
    gate_config = _gate_config(config, staged.dataset)
    table = lake.read_staged(staged)
    watch.lap("read")
    evaluation = evaluate(staged.dataset, table, gate_config, lake, staged.batch_id, watch)
    kept = evaluation.kept
    checks = list(evaluation.checks)
    if force_reason:
        checks.append({"expectation": "forced_release", "success": True, "observed": None,
                       "threshold": "", "details": {"reason": force_reason, "overrode": evaluation.passed is False}})
    publish = evaluation.passed or bool(force_reason)
    report = GateReport(staged.dataset, staged.batch_id, run_id, staged.run_date,
                        "published" if publish else "quarantined", table.num_rows, int(kept.sum()) if publish else 0,
                        evaluation.drop_counts(), checks, reward_statistics(evaluation.frame, kept),
                        forced_reason=force_reason, great_expectations=evaluation.ge_result,
                        stage=table.column("stage")[0].as_py() if table.num_rows else None)
    if publish:
        report.mix = diversity_mix(table, kept)
        _remove_dropped(lake, staged)  # a re-landing's earlier drops no longer describe this batch
        if not kept.all():
            report.dropped_rows_url = _write_dropped(lake, staged, table, evaluation)
            # rewrite staging with the kept rows only; an untouched batch is published byte for byte
            staged = lake.stage_batch(staged.dataset, staged.run_date, staged.batch_id, table.take(pa.array(np.flatnonzero(kept))))
        if evaluation.prints is not None:
            # before publishing: a crash in between leaves extra signatures, never unguarded rows
            dedup.write_signatures(lake, staged.dataset, staged.batch_id,
                                   dedup.signature_table(pa.array(evaluation.frame["id"]), evaluation.prints, np.flatnonzero(kept)))
        report.url = lake.publish(staged)
        watch.lap("write_and_publish")
        report.seconds, report.timings = time.perf_counter() - started, dict(watch)
        report.report_url = _report_url(lake, "published", staged)
        lake.write_report("published", staged, report.to_dict())
    else:
        report.drops = {**report.drops, "quarantined": table.num_rows - sum(report.drops.values())}
        dedup.remove_signatures(lake, staged.dataset, staged.batch_id)
        report.seconds, report.timings = time.perf_counter() - started, dict(watch)
        report.report_url = _report_url(lake, "quarantine", staged)
        report.url = lake.quarantine(staged, report.to_dict())
    if catalog is not None:
        _record(catalog, staged, report)
    if artifacts:
        publish_artifacts(report.to_dict())
    return report


MIX_COLUMNS = ("task_type", "topic")


def diversity_mix(table: pa.Table, kept: np.ndarray) -> list[dict[str, Any]]:
    """Rows per task type and topic among the kept rows, for datasets that carry those columns."""
    columns = [c for c in MIX_COLUMNS if c in table.column_names]
    if not columns or not table.num_rows:
        return []
    counts = table.select(columns).filter(pa.array(kept)).group_by(columns).aggregate([([], "count_all")])
    return sorted(counts.rename_columns([*columns, "rows"]).to_pylist(), key=lambda r: [str(r[c]) for c in columns])


def _json(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value, default=str)


def _record(catalog: Any, staged: StagedBatch, report: GateReport) -> None:
    with catalog.writing():  # one transaction for the whole verdict
        catalog.record_gate_results(report.batch_id, [
            {**c, "observed": _json(c.get("observed")), "details": _json(c.get("details") or None)} for c in report.checks])
        catalog.record_gate_drops(report.run_id, report.stage, report.dataset, report.batch_id, report.drops)
        catalog.record_batch(staged, report.state, report.run_id, report.url)
