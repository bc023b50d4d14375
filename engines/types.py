"""The two protocols every backend speaks, and the records that cross them.

A request carries a whole batch; a backend answers every request, with an `error` on the
result where it could not (never an exception that loses the rest of the batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": "..."}

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")

# Weights of the HelpSteer2 paper for one scalar reward from the five attributes.
DEFAULT_REWARD_WEIGHTS = {
    "helpfulness": 0.65,
    "correctness": 0.8,
    "coherence": 0.45,
    "complexity": 0.55,
    "verbosity": -0.4,
}


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    json_schema: dict[str, Any] | None = None  # structured output where the backend supports it


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None = None  # "stop" | "length" | ...


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    seconds: float = 0.0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.errors += other.errors
        self.seconds += other.seconds


@dataclass
class ChatResult:
    completions: list[Completion] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # set when the request failed after its last try

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str | None:
        return self.completions[0].text if self.completions else None


@dataclass
class RewardResult:
    attributes: dict[str, float] = field(default_factory=dict)
    reward: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def aggregate_reward(attributes: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted sum of the attributes the weights name.

    >>> aggregate_reward({"helpfulness": 4, "verbosity": 2}, {"helpfulness": 1.0, "verbosity": -0.5})
    3.0
    """
    return float(sum(w * attributes[name] for name, w in weights.items() if name in attributes))


@runtime_checkable
class ChatEngine(Protocol):
    model_name: str
    backend: str
    usage: Usage

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class RewardEngine(Protocol):
    model_name: str
    backend: str
    usage: Usage

    async def score(self, conversations: Sequence[list[Message]]) -> list[RewardResult]: ...

    async def aclose(self) -> None: ...


def chat_sync(engine: ChatEngine, requests: Sequence[ChatRequest]) -> list[ChatResult]:
    """Sync entry point for scripts and tasks that do not run an event loop."""
    return asyncio.run(engine.chat(requests))


def score_sync(engine: RewardEngine, conversations: Sequence[list[Message]]) -> list[RewardResult]:
    return asyncio.run(engine.score(conversations))
