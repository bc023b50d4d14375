"""Settings of the preferences stage (the run config's `preferences:` section)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.prompts.config import TASK_TYPES
from tasks.target import Target

JudgeName = Literal["ground_truth", "verifier", "reward_model", "llm_judge"]
DEFAULT_JUDGES: list[JudgeName] = ["ground_truth", "verifier", "reward_model"]
DEFAULT_REWARD = "default-reward"  # the embedded log-probability judge, registered when a config names none


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Generator(Strict):
    """One model of the pool that answers prompts: each response draws a model by these weights."""

    model: str = Field(description="registry name of a chat model")
    weight: float = Field(1.0, gt=0)
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(384, ge=1)


class PromptSelection(Strict):
    """Which published prompts get responses."""

    run_dates: list[str] = Field(default_factory=list, description="YYYY-MM-DD; empty: the latest run date of prompts")
    task_types: list[Literal[TASK_TYPES]] = Field(default_factory=list, description="empty: every task type")  # type: ignore[valid-type]
    sources: list[Literal["synthetic", "seed"]] = Field(default_factory=list, description="empty: both")
    limit: int | None = Field(None, ge=1, description="at most this many prompts (in id order)")

    @field_validator("run_dates")
    @classmethod
    def _dates(cls, dates: list[str]) -> list[str]:
        for date in dates:
            try:
                dt.date.fromisoformat(date)
            except ValueError:
                raise ValueError(f"run date {date!r} is not YYYY-MM-DD") from None
        return dates


class LLMJudgeSettings(Strict):
    model: str | None = Field(None, description="registry name of the judge's chat model; default: the first generator")
    max_tokens: int = Field(64, ge=1, description="room for the verdict (and a short reason)")


class BestOfN(Strict):
    enabled: bool = True
    min_reward: float | None = Field(None, description="the best response must reach this aggregate reward")


class Calibration(Strict):
    """A judge is trusted only after it ranks a calibration set well enough."""

    enabled: bool = True
    file: str | None = Field(None, description="pairs in RewardBench form (Parquet/JSONL); default: the shipped set")
    min_accuracy: float = Field(0.6, ge=0, le=1, description="below this a judge decides no pairs")
    trust_anyway: list[JudgeName] = Field(default_factory=list, description="judges that decide whatever their accuracy")


class PreferencesStage(Strict):
    enabled: bool = False
    prompts: PromptSelection = PromptSelection()
    responses_per_prompt: int = Field(4, ge=2, le=32, description="K responses per prompt")
    generators: list[Generator] = Field(default_factory=lambda: [Generator(model="default")])
    reward: str = Field(DEFAULT_REWARD, description="registry name of the reward model that scores every response")
    judges: list[JudgeName] = Field(default_factory=lambda: list(DEFAULT_JUDGES), description="asked in this order")
    min_margin: float = Field(0.5, ge=0, description="reward_model judge: least aggregate-reward gap of a pair")
    llm_judge: LLMJudgeSettings = LLMJudgeSettings()
    best_of_n: BestOfN = BestOfN()
    calibration: Calibration = Calibration()
    batch_size: int = Field(64, ge=1, le=10_000, description="prompts per batch (K responses each)")
    batches_in_flight: int = Field(4, ge=1, le=256, description="batches generated side by side")
    target: Target = Field(default_factory=Target, description="exactly this many published pairs, within budgets")

    @model_validator(mode="after")
    def _judges_once(self) -> PreferencesStage:
        if len(set(self.judges)) != len(self.judges):
            raise ValueError(f"judges lists a judge twice: {self.judges}")
        if not self.generators:
            raise ValueError("generators: at least one chat model must answer the prompts")
        return self

    def llm_judge_model(self) -> str:
        return self.llm_judge.model or self.generators[0].model
