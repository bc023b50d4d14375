"""Batches for the gate tests: rows that pass every rule, and a real local lake and catalog."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from storage.catalog import Catalog
from storage.config import LakeConfig
from storage.lake import Lake

RUN_DATE = "2026-11-22"
WORDS = ("river mountain garden recipe planet budget orbit pastry saving telescope soup invest comet "
         "bread loan galaxy spice tax moon oven stock star herb credit nebula grill bond rocket salad "
         "pension crater sauce rent meteor noodle index eclipse butter fund asteroid pepper wage").split()


def sentence(rng: random.Random, words: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "?"


def lineage(batch: str) -> dict:
    return {"run_id": "run-1", "batch_id": batch, "stage": "test", "model": "tiny", "backend": "fake",
            "created_at": dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)}


def attributes(level: float = 3.0) -> dict:
    return {"helpfulness": level, "correctness": level, "coherence": level, "complexity": 2.0, "verbosity": 2.0}


def preference_rows(count: int = 12, seed: int = 0, batch: str = "b-pref") -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append({
            "id": f"{batch}-{i}", "prompt": [{"role": "user", "content": sentence(rng)}],
            "chosen": [{"role": "assistant", "content": sentence(rng, 30)}],
            "rejected": [{"role": "assistant", "content": sentence(rng, 30)}],
            "judge": "reward_model", "chosen_reward": 3.5, "rejected_reward": 1.5,
            "chosen_attributes": attributes(3.5), "rejected_attributes": attributes(1.0), "margin": 2.0,
            **lineage(batch),
        })
    return rows


def dialogue_rows(count: int = 12, seed: int = 1, batch: str = "b-dlg") -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        messages = []
        for _ in range(3):
            messages += [{"role": "user", "content": sentence(rng)}, {"role": "assistant", "content": sentence(rng, 25)}]
        rows.append({"id": f"{batch}-{i}", "messages": messages, "turn_attributes": [attributes()] * 3,
                     "turn_rewards": [3.0] * 3, "reward": 3.0, **lineage(batch)})
    return rows


def prompt_rows(count: int = 12, seed: int = 2, batch: str = "b-prm") -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{batch}-{i}", "task_type": "open_qa", "messages": [{"role": "user", "content": sentence(rng)}],
             "source": "synthetic", **lineage(batch)} for i in range(count)]


@pytest.fixture
def lake_config(tmp_path) -> LakeConfig:
    return LakeConfig(root=str(tmp_path / "lake"))


@pytest.fixture
def lake(lake_config) -> Lake:
    return Lake(lake_config)


@pytest.fixture
def catalog(lake_config, lake) -> Catalog:
    return Catalog(lake_config, lake)
