"""GE Data Docs for the last gated batches, rebuilt from the GE results kept in their reports."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from storage.lake import Lake

SITE = "sdg_quality"


def recent_reports(lake: Lake, last: int = 20, dataset: str | None = None) -> list[dict[str, Any]]:
    """The newest `last` gate reports (published and quarantined batches), newest first."""
    reports = []
    for area in ("published", "quarantine"):
        for batch in lake.list_batches(area, dataset):
            if batch["report_url"]:
                with lake.fs.open(batch["report_url"]) as handle:
                    reports.append(json.load(handle))
    reports.sort(key=lambda r: r.get("created_at", ""), reverse=True)
    return reports[:last]


def build_docs(reports: list[dict[str, Any]], out_dir: str) -> str:
    """Write a Data Docs site for these reports into out_dir; returns the path of its index.html."""
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from quality.expectations import ge_context

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    context = ge_context()
    if SITE not in (context.list_data_docs_sites() or {}):
        context.add_data_docs_site(SITE, {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": out_dir},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
    else:
        context.update_data_docs_site(SITE, {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": out_dir},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
    for report in reports:
        if not report.get("great_expectations"):
            continue
        result = ExpectationSuiteValidationResultSchema().load(report["great_expectations"])
        # one page per batch: suite = dataset, run = the pipeline run, batch = the batch id
        key = ValidationResultIdentifier(
            ExpectationSuiteIdentifier(name=report["dataset"]),
            RunIdentifier(run_name=report["run_id"], run_time=dt.datetime.fromisoformat(report["created_at"])),
            report["batch_id"])
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[SITE])
    return os.path.join(out_dir, "index.html")
