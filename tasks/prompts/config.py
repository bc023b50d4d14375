"""Settings of the prompts stage (the run config's `prompts:` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TASK_TYPES = ("open_qa", "writing", "closed_qa", "math", "coding", "instruction_following", "two_turn", "seed")
MATH_LEVELS = ("elementary", "high school", "university")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TopicsSettings(Strict):
    macro_topics: int = Field(4, ge=0, le=500, description="macro topics the generator lists")
    subtopics_per_topic: int = Field(3, ge=0, le=100)
    user_topics: list[str] = Field(default_factory=list, description="merged with the generated ones")
    reuse_published: bool = Field(False, description="reuse the last published topic tree instead of asking")
    near_duplicate_jaccard: float = Field(0.7, gt=0, le=1)


class QuestionSettings(Strict):
    enabled: bool = True
    per_topic: int = Field(2, ge=1, le=100)
    revise: bool = Field(True, description="a second pass makes each question more detailed or harder")


class WritingSettings(QuestionSettings):
    text_types: list[str] = Field(default_factory=lambda: ["email", "essay", "poem", "short story", "advertisement"])


class MathSettings(QuestionSettings):
    levels: list[Literal["elementary", "high school", "university"]] = Field(default_factory=lambda: list(MATH_LEVELS))
    revise: bool = False


class CodingSettings(QuestionSettings):
    revise: bool = False


class SeedSource(Strict):
    path: Path = Field(description="Parquet, JSONL, CSV file or a local Hugging Face datasets folder")
    prompt_column: str = "prompt"
    reference_column: str | None = Field(None, description="reference answer (GSM8K/MATH style ground truth)")
    unsafe_column: str | None = Field(None, description="boolean column flagging unsafe prompts")
    limit: int | None = Field(None, ge=1)


class DocumentSource(Strict):
    path: Path = Field(description=".txt/.md file (one document), or a Parquet, JSONL, CSV file or datasets folder")
    text_column: str = Field("text", description="for tables: the column holding one document per row")
    limit: int | None = Field(None, ge=1)


class ClosedQASettings(Strict):
    documents: list[DocumentSource] = Field(default_factory=list, description="text files, or tables with a text column")
    per_document: int = Field(2, ge=1, le=50)
    max_document_chars: int = Field(6000, ge=200, description="longer documents are cut at a paragraph or sentence")


class InstructionSettings(Strict):
    count: int = Field(6, ge=0, description="instruction-following prompts to make from generated questions")
    forms: list[Literal["single_turn", "multi_turn", "second_turn"]] = Field(
        default_factory=lambda: ["single_turn", "multi_turn", "second_turn"]
    )
    instruction_ids: list[str] | None = Field(None, description="allowed instruction ids; default: all")
    max_per_prompt: int = Field(2, ge=1, le=4)

    @field_validator("instruction_ids")
    @classmethod
    def _known_ids(cls, ids: list[str] | None) -> list[str] | None:
        if ids is None:
            return ids
        from tasks.instructions import INSTRUCTIONS

        unknown = [i for i in ids if i not in INSTRUCTIONS]
        if unknown:
            raise ValueError(f"unknown instruction id(s) {unknown}; allowed: {', '.join(sorted(INSTRUCTIONS))}")
        return ids


class TwoTurnSettings(Strict):
    count: int = Field(4, ge=0, description="two-turn prompts (User/Assistant/User) from seed prompts")


class SeedSettings(Strict):
    sources: list[SeedSource] = Field(default_factory=list)
    unsafe: Literal["keep", "remove"] = Field("remove", description="'keep' for preference data, 'remove' for SFT")


class PromptsStage(Strict):
    enabled: bool = True
    generator: str = "default"
    batch_size: int = Field(256, ge=1, le=100_000, description="rows per landed batch")
    max_tokens: int = Field(384, ge=16)
    temperature: float = Field(0.8, ge=0, le=2)
    topics: TopicsSettings = TopicsSettings()
    open_qa: QuestionSettings = QuestionSettings()
    writing: WritingSettings = WritingSettings()
    closed_qa: ClosedQASettings = ClosedQASettings()
    math: MathSettings = MathSettings()
    coding: CodingSettings = CodingSettings()
    instruction_following: InstructionSettings = InstructionSettings()
    two_turn: TwoTurnSettings = TwoTurnSettings()
    seeds: SeedSettings = SeedSettings()
