"""Reward gates: scores stay on the rows, the keep/drop decision comes from the config.

Row level: drop rows whose aggregate reward or any configured attribute is below its minimum.
Batch level: the mean reward of the kept rows must reach `min_mean_reward` (the acceptance rate
is a GE expectation over the `accepted` column, see quality.expectations).
A row the reward model never scored (null reward: ground-truth or verifier judged it) is not
dropped for low reward: there is no score to compare, and inventing one would hide that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from quality.config import GateConfig
from storage.schemas import HELPSTEER2_ATTRIBUTES


@dataclass(frozen=True)
class LimitResult:
    """One batch-level check, explained: what was observed next to what was required."""

    name: str
    success: bool
    observed: float | None
    threshold: str
    details: str = ""

    def as_record(self) -> dict:
        return {"expectation": self.name, "success": self.success, "observed": self.observed,
                "threshold": self.threshold, "details": self.details}


def low_reward_reasons(frame: pd.DataFrame, config: GateConfig) -> pd.Series:
    """Per row: None to keep, or the first reward rule it fails ('low_reward', 'low_<attribute>')."""
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    rules: list[tuple[str, str, float]] = []
    if config.min_reward is not None:
        rules.append(("low_reward", "reward", config.min_reward))
    rules += [(f"low_{name}", name, config.min_attributes[name])
              for name in HELPSTEER2_ATTRIBUTES if name in config.min_attributes]
    for reason, column, minimum in rules:
        scores = frame[column].to_numpy(dtype=float)
        below = ~np.isnan(scores) & (scores < minimum)
        reasons[below & reasons.isna().to_numpy()] = reason
    return reasons


def reward_statistics(frame: pd.DataFrame, kept: np.ndarray) -> dict:
    """Reward summary of the whole batch and of the rows that survive, for the report."""

    def summary(values: np.ndarray) -> dict:
        values = values[~np.isnan(values)]
        if not len(values):
            return {"scored": 0}
        return {"scored": int(len(values)), "mean": float(values.mean()), "min": float(values.min()),
                "p50": float(np.median(values)), "max": float(values.max())}

    rewards = frame["reward"].to_numpy(dtype=float) if len(frame) else np.zeros(0)
    stats = {"all": summary(rewards), "kept": summary(rewards[kept])}
    stats["attributes_kept_mean"] = {
        name: (float(np.nanmean(frame[name].to_numpy(dtype=float)[kept]))
               if kept.any() and not np.isnan(frame[name].to_numpy(dtype=float)[kept]).all() else None)
        for name in HELPSTEER2_ATTRIBUTES
    }
    return stats


def batch_reward_limits(frame: pd.DataFrame, kept: np.ndarray, config: GateConfig) -> list[LimitResult]:
    """Batch-level reward limits over the kept rows (none when no minimum is configured)."""
    if config.min_mean_reward is None:
        return []
    rewards = frame["reward"].to_numpy(dtype=float)[kept] if len(frame) else np.zeros(0)
    rewards = rewards[~np.isnan(rewards)]
    if not len(rewards):
        # nothing scored: the limit cannot be met, and saying so beats passing silently
        return [LimitResult("mean_reward_of_kept_rows", False, None, f">= {config.min_mean_reward}",
                            "no kept row has a reward score")]
    mean = float(rewards.mean())
    return [LimitResult("mean_reward_of_kept_rows", mean >= config.min_mean_reward, mean,
                        f">= {config.min_mean_reward}")]
