"""The backfill deployment's flow: the nightly flow once per date of a range, oldest first.

Each night is a `nightly` subflow (named after its date), so the UI shows a backfill as one run
with a child run per night. The nights share one engine scope: a vLLM model loads once for the
whole range, not once per date. Nights run in date order, one at a time (a night may reuse the
topics of the nights before it), and the first failed night fails the backfill: the nights after
it are not started, and rerunning the same range redoes only what is missing (run ids are derived
from the config name and the date).
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from engines.registry import engine_scope
from flows.cluster import cluster_scope
from flows.config import RunConfig, load_config
from flows.nightly import nightly_flow

MAX_NIGHTS = 366  # a range longer than a year is a typo more often than a plan


def nights(start_date: dt.date, end_date: dt.date) -> list[str]:
    """The dates of a backfill, `start_date` to `end_date` inclusive, as YYYY-MM-DD."""
    if end_date < start_date:
        raise ValueError(f"end_date {end_date} is before start_date {start_date}")
    count = (end_date - start_date).days + 1
    if count > MAX_NIGHTS:
        raise ValueError(f"{start_date} to {end_date} is {count} nights; a backfill runs at most {MAX_NIGHTS}")
    return [(start_date + dt.timedelta(days=i)).isoformat() for i in range(count)]


@flow(name="backfill", log_prints=True)
async def backfill_flow(start_date: dt.date, end_date: dt.date, config: RunConfig | None = None,
                        config_file: str | None = None) -> dict:
    """Every night from `start_date` to `end_date` (inclusive), oldest first.

    Args:
        start_date: the first night of the range
        end_date: the last night of the range (inclusive)
        config: the run config of every night (the deployment's form)
        config_file: a run config YAML, relative to the working directory, used when `config` is empty
    """
    dates = nights(start_date, end_date)  # a bad range fails before any work
    if config is None:
        config = load_config(config_file)
    summaries = {}
    async with engine_scope(), cluster_scope(config.cluster):  # the first night's models serve every night
        for date in dates:
            night = nightly_flow.with_options(flow_run_name=f"nightly-{date}")
            summaries[date] = await night(config=config, run_date=date)
            print(f"backfill: {date} done ({len(summaries)} of {len(dates)})")
    return {"start_date": dates[0], "end_date": dates[-1], "nights": summaries}
