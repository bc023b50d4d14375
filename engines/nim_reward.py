"""The NIM reward backend: nemotron-4-340b-reward behind `/v1/chat/completions`.

The endpoint scores the last assistant turn of a conversation and answers its attributes as
the tokens of the first choice's log-probabilities, one `name:value` token each:

    choices[0].logprobs.content = [{"token": "helpfulness:3.9", "logprob": ...}, ...]

The HTTP side (window, retries, deadlines) is the chat engine's (engines/openai_http.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

from engines.config import ModelSpec
from engines.openai_http import CallFailed, ChatCompletionsCaller
from engines.types import HELPSTEER2_ATTRIBUTES, Message, RewardResult, aggregate_reward
from engines.window import AdaptiveWindow


class MalformedRewardAnswer(ValueError):
    pass


def parse_attribute_tokens(data: dict[str, Any]) -> dict[str, float]:
    """The five HelpSteer2 attributes from a NIM reward answer.

    >>> answer = {"choices": [{"logprobs": {"content": [
    ...     {"token": "helpfulness:3.9"}, {"token": "correctness:3.6"}, {"token": "coherence:4.1"},
    ...     {"token": "complexity:1.2"}, {"token": "verbosity:1.5"}]}}]}
    >>> parse_attribute_tokens(answer)["coherence"]
    4.1
    """
    try:
        tokens = data["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MalformedRewardAnswer("no choices[0].logprobs.content in the answer") from None
    if not isinstance(tokens, list):
        raise MalformedRewardAnswer(f"logprobs.content is {type(tokens).__name__}, not a list")
    attributes: dict[str, float] = {}
    for entry in tokens:
        token = entry.get("token") if isinstance(entry, dict) else None
        name, sep, value = str(token).partition(":")
        name = name.strip()
        if not sep or name not in HELPSTEER2_ATTRIBUTES:
            continue  # other tokens (separators, unknown heads) carry no attribute
        try:
            score = float(value)
        except ValueError:
            raise MalformedRewardAnswer(f"attribute token {token!r} has no number") from None
        if not math.isfinite(score):
            raise MalformedRewardAnswer(f"attribute token {token!r} is not a finite number")
        attributes[name] = score
    missing = [name for name in HELPSTEER2_ATTRIBUTES if name not in attributes]
    if missing:
        seen = [e.get("token") if isinstance(e, dict) else e for e in tokens][:10]
        raise MalformedRewardAnswer(f"missing attributes {missing}; tokens: {seen}")
    return attributes


class NIMRewardEngine:
    backend = "nim"

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
    ) -> None:
        self.name = name
        self.spec = spec
        self.model_name = spec.model or name
        self._caller = ChatCompletionsCaller(spec, backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s)
        self.usage = self._caller.usage

    @property
    def window(self) -> AdaptiveWindow:
        return self._caller.window

    async def score(self, conversations: Sequence[list[Message]]) -> list[RewardResult]:
        started = time.monotonic()
        try:
            return await self._caller.loop.run(self._score_batch(list(conversations)))
        finally:
            self.usage.seconds += time.monotonic() - started

    async def _score_batch(self, conversations: list[list[Message]]) -> list[RewardResult]:
        return list(await asyncio.gather(*(self._score_one(c) for c in conversations)))

    async def _score_one(self, conversation: list[Message]) -> RewardResult:
        if not conversation or conversation[-1].get("role") != "assistant":
            return RewardResult(error="the conversation must end with an assistant turn to score")
        try:
            data = await self._caller.call({"model": self.model_name, "messages": conversation})
            attributes = parse_attribute_tokens(data)
        except CallFailed as exc:
            return RewardResult(error=str(exc))
        except MalformedRewardAnswer as exc:
            self.usage.errors += 1
            return RewardResult(error=f"{self._caller.base_url} model {self.model_name!r}: malformed reward answer: {exc}")
        return RewardResult(attributes=attributes, reward=aggregate_reward(attributes, self.spec.reward_weights))

    async def aclose(self) -> None:
        await self._caller.aclose()
