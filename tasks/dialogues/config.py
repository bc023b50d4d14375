"""Settings of the dialogues stage (the run config's `dialogues:` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.preferences.config import DEFAULT_REWARD, PromptSelection
from tasks.target import Target


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssistantSide(Strict):
    """The model that answers: greedy by default, as the Nemotron-4 report does for its dialogues."""

    model: str = Field("default", description="registry name of a chat model")
    system_prompt: str | None = Field(
        None, description="a system turn the assistant sees first (kept on the row: it is what the model was told)")
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(384, ge=1)


class UserSide(Strict):
    """The model that plays the user, given a persona and the whole history."""

    model: str | None = Field(None, description="registry name of a chat model; default: the assistant's")
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(128, ge=1)
    tries: int = Field(3, ge=1, le=10, description="attempts (new seeds) at a usable user turn before the dialogue is dropped")


class PersonaSettings(Strict):
    file: str | None = Field(None, description="JSONL of personas {id, who, wants, style}")
    replace: bool = Field(False, description="true: only the file's personas; false: the file's added to ours")


class DialoguesStage(Strict):
    enabled: bool = False
    prompts: PromptSelection = PromptSelection()
    rounds: int = Field(3, ge=1, le=8, description="user turns per dialogue, each answered by the assistant")
    assistant: AssistantSide = AssistantSide()
    user: UserSide = UserSide()
    personas: PersonaSettings = PersonaSettings()
    reward: str = Field(DEFAULT_REWARD, description="registry name of the reward model that scores every assistant turn")
    min_turn_reward: float | None = Field(
        None, description="drop a dialogue whose weakest assistant turn scores below this (low_turn_reward)")
    instruction_retries: int = Field(
        0, ge=0, le=10, description="instruction-following turns that break a rule: sampled again this many times")
    retry_temperature: float = Field(0.7, gt=0, le=2, description="sampling of those retries")
    target: Target = Field(default_factory=Target, description="exactly this many published dialogues, within budgets")
    batch_size: int = Field(64, ge=1, le=10_000, description="dialogues per batch (each round is one request per dialogue)")
    batches_in_flight: int = Field(8, ge=1, le=256, description="batches role-played side by side")

    @model_validator(mode="after")
    def _user_model_and_personas(self) -> DialoguesStage:
        if self.user.model is None:
            self.user.model = self.assistant.model
        if self.enabled and self.personas.file:  # a bad persona file fails the config, before any model runs
            from tasks.dialogues.personas import load_personas

            load_personas(self.personas)
        return self
