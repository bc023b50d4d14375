"""Inside a Prefect flow the gate shows its report as a table and a markdown artifact; outside, it skips them."""

from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from quality.artifacts import publish_artifacts
from quality.config import QualityConfig
from quality.tasks import gate_batch
from tests.quality.conftest import RUN_DATE, preference_rows


def test_outside_a_run_no_artifact_is_made():
    report = {"dataset": "preferences", "batch_id": "b", "state": "published", "rows_in": 1, "rows_out": 1,
              "drops": {}, "checks": [], "reward": {}}
    assert publish_artifacts(report) is False


def test_gate_task_in_a_flow_creates_table_and_markdown_artifacts(lake, catalog):
    staged = lake.stage_batch("preferences", RUN_DATE, "in-flow", preference_rows())

    @flow
    def gate_one():
        return gate_batch(lake, catalog, staged, QualityConfig(), "run-flow")

    with prefect_test_harness():
        report = gate_one()
        assert report.state == "published"

        async def artifacts():
            async with get_client() as client:
                return await client.read_artifacts()

        import asyncio

        found = {(a.key, a.type) for a in asyncio.run(artifacts())}
    assert ("gate-preferences", "table") in found  # one key per dataset, a version per batch
    assert ("gate-preferences-summary", "markdown") in found
