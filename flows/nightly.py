"""The nightly pipeline: every stage of one night, in order, each a subflow visible in the UI.

Stages hand data on as lake references: the prompts stage's published batch ids are what the
preferences and dialogues stages answer (so a backfilled night answers its own prompts, not the
newest ones). The night ends with its summary and its table of batches as artifacts.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from engines.registry import engine_scope
from flows.cluster import cluster_scope
from flows.config import RunConfig, load_config
from flows.dialogues import dialogues_flow
from flows.preferences import preferences_flow
from flows.prompts import prompts_flow
from flows.reports import artifact_key, night_batches, night_markdown
from storage.catalog import Catalog


def published_batches(stage_summary: dict, dataset: str) -> list[str]:
    """The lake references a stage hands on: the ids of its published batches of `dataset`."""
    return [b["batch_id"] for b in stage_summary["batches"] if b["dataset"] == dataset and b["state"] == "published"]


@flow(name="nightly", log_prints=True)
async def nightly_flow(config: RunConfig | None = None, config_file: str | None = None, run_date: str | None = None) -> dict:
    """One night of data. A deployment names its run config by `config_file` (a YAML path relative to
    the working directory) or passes it inline as `config`; neither means every default."""
    if config is None:
        config = load_config(config_file)
    run_date = run_date or dt.datetime.now(dt.UTC).date().isoformat()
    summary = {"run_date": run_date, "config": config.name}
    prompt_batches = None  # without a prompts stage tonight, the later stages select by their config
    # one model load per night: the stages share the engines (and the Dask cluster, if any), closed at the end
    async with engine_scope(), cluster_scope(config.cluster):
        if config.prompts.enabled:
            summary["prompts"] = await prompts_flow(config, run_date)
            prompt_batches = published_batches(summary["prompts"], "prompts")
        if config.preferences.enabled:
            summary["preferences"] = await preferences_flow(config, run_date, prompt_batches)
        if config.dialogues.enabled:
            summary["dialogues"] = await dialogues_flow(config, run_date, prompt_batches)
    await acreate_markdown_artifact(night_markdown(config, run_date, summary, Catalog(config.lake)),
                                    key=artifact_key(config.name, "night"), description=f"The night of {run_date}")
    await acreate_table_artifact(night_batches(summary), key=artifact_key(config.name, "night-batches"),
                                 description=f"Every gate batch of {run_date}")
    return summary
