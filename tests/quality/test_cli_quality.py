"""`sdg quarantine` and `sdg quality docs` against a real local lake."""

from __future__ import annotations

import os

import yaml
from typer.testing import CliRunner

from flows.cli import app
from quality.config import QualityConfig
from quality.gate import run_gate
from tests.quality.conftest import RUN_DATE, preference_rows

runner = CliRunner()


def _config_file(tmp_path, lake_config, **quality) -> str:
    path = tmp_path / "run.yaml"
    data = {"lake": {"root": lake_config.root}}
    if quality:
        data["quality"] = quality
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _quarantine(lake, catalog, batch="q1"):
    rows = preference_rows(batch=batch)
    rows[4]["rejected"] = rows[4]["chosen"]
    report = run_gate(lake, catalog, lake.stage_batch("preferences", RUN_DATE, batch, rows), QualityConfig(), "run-7")
    assert report.state == "quarantined"
    return report


def test_list_show_and_a_release_that_fails_again(tmp_path, lake_config, lake, catalog):
    _quarantine(lake, catalog)
    config = _config_file(tmp_path, lake_config)
    listed = runner.invoke(app, ["quarantine", "list", "-c", config])
    assert listed.exit_code == 0 and "q1" in listed.output and "chosen_differs_from_rejected" in listed.output
    shown = runner.invoke(app, ["quarantine", "show", "q1", "-c", config])
    assert shown.exit_code == 0 and "FAIL chosen_differs_from_rejected" in shown.output and "q1-4" in shown.output
    again = runner.invoke(app, ["quarantine", "release", "q1", "-c", config])
    assert again.exit_code == 1 and "still failing: chosen_differs_from_rejected" in again.output
    assert [b["batch_id"] for b in lake.list_quarantined()] == ["q1"]
    missing = runner.invoke(app, ["quarantine", "show", "nope", "-c", config])
    assert missing.exit_code == 1


def test_forced_release_needs_a_reason_and_records_it(tmp_path, lake_config, lake, catalog):
    _quarantine(lake, catalog)
    config = _config_file(tmp_path, lake_config)
    refused = runner.invoke(app, ["quarantine", "release", "q1", "--force", "-c", config])
    assert refused.exit_code == 2 and lake.list_quarantined()
    forced = runner.invoke(app, ["quarantine", "release", "q1", "--force", "--reason", "judge bug, pair checked by hand",
                                 "-c", config])
    assert forced.exit_code == 0, forced.output
    assert not lake.list_quarantined() and [b["batch_id"] for b in lake.list_batches("published")] == ["q1"]
    recorded = catalog.query("SELECT details FROM gate_results WHERE batch_id = 'q1' AND expectation = 'forced_release'")
    assert "judge bug, pair checked by hand" in recorded.column(0).to_pylist()[0]


def test_release_after_the_config_changed_publishes_and_docs_build(tmp_path, lake_config, lake, catalog):
    rows = preference_rows(batch="q2")
    for row in rows[:8]:
        row["chosen_reward"] = 0.5
    strict = QualityConfig.model_validate({"preferences": {"min_reward": 1.0}})
    staged = lake.stage_batch("preferences", RUN_DATE, "q2", rows)
    assert run_gate(lake, catalog, staged, strict, "run-8").failed == ["acceptance_rate"]
    config = _config_file(tmp_path, lake_config, preferences={"min_reward": 1.0, "min_acceptance_rate": 0.25})
    released = runner.invoke(app, ["quarantine", "release", "q2", "-c", config])
    assert released.exit_code == 0 and "published (4 of 12 rows published)" in released.output
    out = tmp_path / "docs"
    docs = runner.invoke(app, ["quality", "docs", "-c", config, "--out", str(out)])
    assert docs.exit_code == 0, docs.output
    index = docs.output.strip().splitlines()[-1]
    assert index == str(out / "index.html") and os.path.exists(index)
    pages = [f for _, _, files in os.walk(out / "validations") for f in files]
    assert "q2.html" in pages
