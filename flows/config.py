"""One file describes a whole run: the models, the lake and each stage.

Each package owns the model of its part (engines: ModelSpec, storage: LakeConfig, ...); this
module only composes them and turns a bad file into an error that names the field, the value
and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engines.config import ModelSpec
from flows.cluster import ClusterConfig
from quality.config import QualityConfig
from storage.config import LakeConfig
from tasks.dialogues.config import DialoguesStage
from tasks.preferences.config import DEFAULT_REWARD, PreferencesStage
from tasks.prompts.config import PromptsStage

DEFAULT_MODEL = "default"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunConfig(Strict):
    name: str = Field("sdg", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    lake: LakeConfig = LakeConfig()
    prompts: PromptsStage = PromptsStage()
    preferences: PreferencesStage = PreferencesStage()
    dialogues: DialoguesStage = DialoguesStage()
    quality: QualityConfig = QualityConfig()
    cluster: ClusterConfig | None = None

    @model_validator(mode="after")
    def _default_model_and_references(self) -> RunConfig:
        # A config that names no model still runs: the embedded SmolLM2 is the default generator,
        # and the log-probability judge on it the default reward.
        self.models.setdefault(DEFAULT_MODEL, ModelSpec())
        rewards = [s.reward for s in (self.preferences, self.dialogues) if s.enabled]
        if DEFAULT_REWARD in rewards:
            self.models.setdefault(DEFAULT_REWARD, ModelSpec(kind="reward", backend="logprob"))
        for where, name, kind in self.model_references():
            if name not in self.models:
                known = ", ".join(sorted(n for n, s in self.models.items() if s.kind == kind)) or "(none)"
                raise ValueError(f"{where} names model {name!r}, which is not in models; {kind} models: {known}")
            if self.models[name].kind != kind:
                known = ", ".join(sorted(n for n, s in self.models.items() if s.kind == kind)) or "(none)"
                raise ValueError(f"{where} needs a {kind} model, but {name!r} is a {self.models[name].kind} model; "
                                 f"{kind} models: {known}")
        return self

    def model_references(self) -> list[tuple[str, str, str]]:
        """(field, registry name, the kind of model it needs) for every model the config names."""
        refs = [("prompts.generator", self.prompts.generator, "chat")]
        refs += [(f"models.{n}.judge", s.judge, "chat") for n, s in self.models.items() if s.judge]
        if self.preferences.enabled:
            stage = self.preferences
            refs += [(f"preferences.generators.{i}.model", g.model, "chat") for i, g in enumerate(stage.generators)]
            refs.append(("preferences.reward", stage.reward, "reward"))
            if "llm_judge" in stage.judges:
                refs.append(("preferences.llm_judge.model", stage.llm_judge_model(), "chat"))
        if self.dialogues.enabled:
            talk = self.dialogues
            refs += [("dialogues.assistant.model", talk.assistant.model, "chat"),
                     ("dialogues.user.model", talk.user.model, "chat"), ("dialogues.reward", talk.reward, "reward")]
        return refs

    def fingerprint(self) -> str:
        """Stable hash of the resolved config: batch ids and the runs table use it."""
        # where batches run (the Dask cluster) does not change what they make: a night resumes on another runner
        blob = json.dumps(self.model_dump(mode="json", exclude={"cluster"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ConfigError(ValueError):
    pass


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "(top level)"
    value = error.get("input")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        return f"{field}: unknown field (value {value!r}); check the spelling against the documented fields"
    if error["type"] == "missing":
        return f"{field}: required field is missing"
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    return f"{field}: {message} (got {shown})"


def parse_config(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of fields, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"{source}: {exc.error_count()} problem(s) in the run config:\n{lines}") from None


def load_config(path: str | Path | None) -> RunConfig:
    """Load a YAML run config; no path means every default (the embedded model, ./lake)."""
    if path is None:
        return RunConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))
