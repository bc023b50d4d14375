"""The gate: staged batch -> published | quarantined, with a report that explains the verdict.

Row-level rules (low reward, duplicates) remove rows before publishing; the dropped rows are
written to <root>/drops/dataset=<name>/run_date=<date>/<batch>.parquet with their reason.
Batch-level rules (GE expectations, acceptance rate, mean reward, empty batch) quarantine the
whole batch. Every input row ends published, dropped with a reason, or quarantined.
"""

from __future__ import annotations

import datetime as dt
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
from quality.frames import DEDUP_TEXT, flatten
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
    report_url: str = ""
    dropped_rows_url: str = ""
    forced_reason: str | None = None
    seconds: float = 0.0
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    great_expectations: dict = field(default_factory=dict, repr=False)

    @property
    def failed(self) -> list[str]:
        return [c["expectation"] for c in self.checks if not c["success"]]

    def summary(self) -> dict[str, Any]:
        """The verdict in a few fields: what flows pass on and print."""
        return {"dataset": self.dataset, "batch_id": self.batch_id, "state": self.state, "rows_in": self.rows_in,
                "rows_out": self.rows_out, "drops": self.drops, "failed": self.failed, "url": self.url,
                "report_url": self.report_url}

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"failed": self.failed}


def evaluate(dataset: str, table: pa.Table, config: GateConfig, lake: Lake | None = None,
             batch_id: str | None = None) -> Evaluation:
    """Score and check a batch (pure but for reading published signatures when a lake is given)."""
    frame = flatten(dataset, table)
    reasons = low_reward_reasons(frame, config)
    duplicate_of = pd.Series([None] * len(frame), dtype=object)
    prints = None
    if (config.exact_dedup or config.near_dedup) and len(frame):
        texts = pa.array(frame[DEDUP_TEXT[dataset]], pa.large_string())
        prints = dedup.fingerprint(texts, config)
        ids = frame["id"]
        rows = np.flatnonzero(reasons.isna().to_numpy())  # a low-reward row never stands for its group
        for row, (reason, earlier) in dedup.duplicates_within(texts, prints, rows, config).items():
            reasons[row], duplicate_of[row] = reason, ids[earlier]
        if lake is not None and config.dedup_against_published:
            rows = np.flatnonzero(reasons.isna().to_numpy())
            for row, (reason, published) in dedup.duplicates_of_published(lake, dataset, batch_id, prints, rows, config).items():
                reasons[row], duplicate_of[row] = reason, published
    frame["accepted"] = reasons.isna().astype(float)
    checks, ge_result = validate(dataset, frame, config)
    kept = reasons.isna().to_numpy()
    checks += [limit.as_record() for limit in batch_reward_limits(frame, kept, config)]
    return Evaluation(frame, reasons, duplicate_of, checks, ge_result, prints)


def _write_dropped(lake: Lake, staged: StagedBatch, table: pa.Table, evaluation: Evaluation) -> str:
    """The dropped rows, whole, with their reason: outside published/, so readers never see them."""
    rows = np.flatnonzero(~evaluation.kept)
    dropped = table.take(pa.array(rows))
    dropped = dropped.append_column("drop_reason", pa.array(evaluation.reasons.iloc[rows].tolist(), pa.string()))
    dropped = dropped.append_column("duplicate_of", pa.array(evaluation.duplicate_of.iloc[rows].tolist(), pa.string()))
    folder = f"{lake.root}/drops/dataset={staged.dataset}/run_date={staged.run_date}"
    path = f"{folder}/{staged.batch_id}.parquet"
    if lake.is_local:
        os.makedirs(folder, exist_ok=True)
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
             force_reason: str | None = None) -> GateReport:
    """Validate a staged batch and publish it (minus dropped rows) or quarantine it, with its report.

    `force_reason` publishes despite failed batch-level checks (row-level drops still apply);
    the reason is kept in the report and in the catalog's gate results.
    """
    started = time.perf_counter()
    gate_config = _gate_config(config, staged.dataset)
    table = lake.read_staged(staged)
    evaluation = evaluate(staged.dataset, table, gate_config, lake, staged.batch_id)
    kept = evaluation.kept
    checks = list(evaluation.checks)
    if force_reason:
        checks.append({"expectation": "forced_release", "success": True, "observed": None,
                       "threshold": "", "details": {"reason": force_reason, "overrode": evaluation.passed is False}})
    publish = evaluation.passed or bool(force_reason)
    report = GateReport(staged.dataset, staged.batch_id, run_id, staged.run_date,
                        "published" if publish else "quarantined", table.num_rows, int(kept.sum()) if publish else 0,
                        evaluation.drop_counts(), checks, reward_statistics(evaluation.frame, kept),
                        forced_reason=force_reason, great_expectations=evaluation.ge_result)
    if publish:
        if not kept.all():
            report.dropped_rows_url = _write_dropped(lake, staged, table, evaluation)
            # rewrite staging with the kept rows only; an untouched batch is published byte for byte
            staged = lake.stage_batch(staged.dataset, staged.run_date, staged.batch_id, table.take(pa.array(np.flatnonzero(kept))))
        if evaluation.prints is not None:
            # before publishing: a crash in between leaves extra signatures, never unguarded rows
            dedup.write_signatures(lake, staged.dataset, staged.batch_id,
                                   dedup.signature_table(pa.array(evaluation.frame["id"]), evaluation.prints, np.flatnonzero(kept)))
        report.url = lake.publish(staged)
        report.seconds = time.perf_counter() - started
        report.report_url = _report_url(lake, "published", staged)
        lake.write_report("published", staged, report.to_dict())
    else:
        report.drops = {**report.drops, "quarantined": table.num_rows - sum(report.drops.values())}
        dedup.remove_signatures(lake, staged.dataset, staged.batch_id)
        report.seconds = time.perf_counter() - started
        report.report_url = _report_url(lake, "quarantine", staged)
        report.url = lake.quarantine(staged, report.to_dict())
    if catalog is not None:
        _record(catalog, staged, report)
    publish_artifacts(report.to_dict())
    return report


def _record(catalog: Any, staged: StagedBatch, report: GateReport) -> None:
    with catalog.writing():  # one transaction for the whole verdict
        catalog.record_gate_results(report.batch_id, [
            {**c, "details": c.get("details") or None} for c in report.checks])
        catalog.record_drops(report.run_id, report.batch_id, f"gate:{report.dataset}", report.drops)
        catalog.record_batch(staged, report.state, report.run_id, report.url)
