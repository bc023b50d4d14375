"""What a batch must pass, per dataset: thresholds come from the run config, never from code.

`QualityConfig` maps each dataset of the lake to its `GateConfig`; a run config that says
nothing gets the defaults below (lenient on reward, strict on structure).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.schemas import HELPSTEER2_ATTRIBUTES


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GateConfig(Strict):
    """Thresholds of one dataset's gate. Row-level rules drop rows; batch-level rules quarantine."""

    # structure and text
    min_text_chars: int = Field(1, ge=0, description="shortest allowed message content (after stripping)")
    max_text_chars: int = Field(32_000, ge=1, description="longest allowed message content")
    # reward scores (HelpSteer2 attributes, each on the reward model's 0..4 scale)
    attribute_min: float = Field(0.0, description="lowest value the reward model can give an attribute")
    attribute_max: float = Field(4.0, description="highest value the reward model can give an attribute")
    min_reward: float | None = Field(None, description="row-level: drop rows whose aggregate reward is below")
    min_attributes: dict[str, float] = Field(
        default_factory=dict, description="row-level: per-attribute minimums, e.g. {correctness: 3}"
    )
    # batch-level limits
    min_rows: int = Field(1, ge=0, description="a batch with fewer rows is quarantined (empty batch)")
    min_acceptance_rate: float = Field(0.5, ge=0.0, le=1.0, description="share of rows that must survive row rules")
    min_mean_reward: float | None = Field(None, description="mean aggregate reward of the kept rows must reach this")
    # de-duplication
    exact_dedup: bool = True
    near_dedup: bool = True
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity of shingle sets")
    num_perm: int = Field(128, description="MinHash bins (a power of two between 16 and 1024)")
    shingle_words: int = Field(3, ge=1, le=16, description="words per shingle")
    dedup_against_published: bool = True

    @field_validator("min_attributes")
    @classmethod
    def _known_attributes(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(HELPSTEER2_ATTRIBUTES))
        if unknown:
            raise ValueError(f"unknown attribute(s) {unknown}; known: {', '.join(HELPSTEER2_ATTRIBUTES)}")
        return value

    @field_validator("num_perm")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        # one-permutation MinHash picks a bin from the top bits of one hash: bins must be 2**k
        if value < 16 or value > 1024 or value & (value - 1):
            raise ValueError(f"num_perm must be a power of two between 16 and 1024, got {value}")
        return value

    @model_validator(mode="after")
    def _ordered_bounds(self) -> GateConfig:
        if self.min_text_chars > self.max_text_chars:
            raise ValueError(f"min_text_chars {self.min_text_chars} > max_text_chars {self.max_text_chars}")
        if self.attribute_min > self.attribute_max:
            raise ValueError(f"attribute_min {self.attribute_min} > attribute_max {self.attribute_max}")
        return self


class QualityConfig(Strict):
    """One GateConfig per dataset; unknown dataset names are refused (extra=forbid)."""

    topics: GateConfig = GateConfig(near_dedup=False, min_acceptance_rate=0.0)
    prompts: GateConfig = GateConfig()
    dialogues: GateConfig = GateConfig()
    # K answers to one prompt may repeat each other (greedy decoding, a short question): judges
    # need them all, so responses are not de-duplicated and every scored one is kept.
    responses: GateConfig = GateConfig(exact_dedup=False, near_dedup=False, min_acceptance_rate=0.0)
    preferences: GateConfig = GateConfig()

    def for_dataset(self, dataset: str) -> GateConfig:
        if dataset not in type(self).model_fields:
            raise KeyError(f"no gate config for dataset {dataset!r}; known: {', '.join(type(self).model_fields)}")
        return getattr(self, dataset)
