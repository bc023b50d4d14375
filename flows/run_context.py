"""What every flow run shares: its id and date, the lake, the catalog, the resolved config.

The run id is derived from the config name, the flow and the run date, so rerunning a night
(after a crash, or by hand) lands the same batch ids and overwrites instead of duplicating.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from engines.registry import get_chat_engine, get_reward_engine
from engines.types import ChatEngine, RewardEngine
from flows.config import RunConfig
from storage.catalog import Catalog
from storage.lake import Lake, check_run_date


@dataclass
class RunContext:
    config: RunConfig
    flow: str
    run_id: str
    run_date: str
    lake: Lake
    catalog: Catalog
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint()

    def chat_engine(self, name: str) -> ChatEngine:
        """The registry's engine for `name`, opened on first use and shared until the outermost stage ends."""
        return get_chat_engine(name, self.config.models)

    def reward_engine(self, name: str) -> RewardEngine:
        return get_reward_engine(name, self.config.models)


def start_run(config: RunConfig, flow: str, run_date: str | dt.date | None = None, run_id: str | None = None) -> RunContext:
    date = check_run_date(run_date or dt.datetime.now(dt.UTC).date())
    lake = Lake(config.lake)
    run = RunContext(config, flow, run_id or f"{config.name}-{flow}-{date}", date, lake, Catalog(config.lake, lake))
    run.catalog.record_run(run.run_id, config.name, run.fingerprint)
    # the resolved config beside the data: what produced a night can always be read back
    config_path = f"{lake.root}/runs/{run.run_id}/config.json"
    lake.fs.makedirs(config_path.rsplit("/", 1)[0], exist_ok=True)
    lake.fs.pipe(config_path, json.dumps(json.loads(config.model_dump_json()), indent=2).encode())
    return run
