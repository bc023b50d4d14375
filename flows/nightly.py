"""The nightly pipeline: every stage of one night, in order, each a subflow visible in the UI."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.config import RunConfig
from flows.prompts import prompts_flow


@flow(name="nightly", log_prints=True)
async def nightly_flow(config: RunConfig, run_date: str | None = None) -> dict:
    run_date = run_date or dt.datetime.now(dt.UTC).date().isoformat()
    summary = {"run_date": run_date}
    if config.prompts.enabled:
        summary["prompts"] = await prompts_flow(config, run_date)
    return summary
