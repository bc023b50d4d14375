"""Prompts published through the real gate, for the stages that start from published prompts."""

import datetime as dt

from quality.config import QualityConfig
from quality.gate import run_gate
from storage.catalog import Catalog
from storage.lake import Lake


def publish_prompts(config, rows, run_date, batch="prompts-b1"):
    """Stage `rows` (prompt fields only) as one `prompts` batch of run `prompts-run` and gate it; the catalog."""
    lake = Lake(config.lake)
    catalog = Catalog(config.lake, lake)
    lineage = {"run_id": "prompts-run", "batch_id": batch, "stage": "prompts",
               "created_at": dt.datetime.fromisoformat(run_date).replace(tzinfo=dt.UTC)}
    staged = lake.stage_batch("prompts", run_date, batch, [{"source": "synthetic", **r, **lineage} for r in rows])
    assert run_gate(lake, catalog, staged, QualityConfig(), "prompts-run", artifacts=False).state == "published"
    return catalog
