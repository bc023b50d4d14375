"""The `openai` chat backend: any OpenAI-compatible server (vLLM serve, NIM, `transformers serve`).

Every request of a batch is its own task; the adaptive window (engines/window.py) decides how
many are in flight, so one slow answer never holds back the rest. Retries, deadlines, fault
handling and the circuit breaker live in engines/openai_http.py, shared with the NIM reward engine.
Requests the breaker ended carry its error; with `on_breaker: fail` the batch raises it instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from engines.config import ModelSpec
from engines.openai_http import BreakerOpen, CallFailed, ChatCompletionsCaller, EngineUnavailable, token_counts
from engines.types import ChatRequest, ChatResult, Completion
from engines.window import AdaptiveWindow


def response_format(json_schema: dict[str, Any]) -> dict[str, Any]:
    """`response_format` for a JSON schema; an already wrapped {"name", "schema"} passes as is."""
    if "schema" in json_schema and "name" in json_schema:
        return {"type": "json_schema", "json_schema": json_schema}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": json_schema, "strict": True}}


class OpenAIChatEngine:
    backend = "openai"

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
        start_window: int | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.model_name = spec.model or name
        self._caller = ChatCompletionsCaller(
            spec, backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s, start_window=start_window
        )
        self.usage = self._caller.usage
        # Learned from the first answer with fewer choices than asked: later requests with
        # n > 1 are sent as n separate requests at once instead of one request plus top-ups.
        self.server_ignores_n = False

    @property
    def window(self) -> AdaptiveWindow:
        return self._caller.window

    @property
    def retries(self) -> int:
        return self._caller.retries

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        started = time.monotonic()
        try:
            return await self._caller.loop.run(self._chat_batch(list(requests)))
        finally:
            self.usage.seconds += time.monotonic() - started

    async def _chat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        stopped: list[str] = []  # errors of requests the breaker ended
        results = list(await asyncio.gather(*(self._chat_one(r, stopped) for r in requests)))
        if stopped and self.spec.on_breaker == "fail":
            raise EngineUnavailable(f"{len(stopped)} of {len(requests)} requests not answered: {stopped[0]}")
        return results

    def _payload(self, request: ChatRequest, n: int, seed: int | None) -> dict[str, Any]:
        sampling = self.spec.sampling
        payload: dict[str, Any] = {
            "model": self.model_name,
            "messages": request.messages,
            "temperature": sampling.temperature if request.temperature is None else request.temperature,
            "top_p": sampling.top_p if request.top_p is None else request.top_p,
            "max_tokens": request.max_tokens or sampling.max_tokens,
        }
        if n != 1:
            payload["n"] = n
        if seed is not None:
            payload["seed"] = seed
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.json_schema is not None:
            payload["response_format"] = response_format(request.json_schema)
        return payload

    async def _chat_one(self, request: ChatRequest, stopped: list[str]) -> ChatResult:
        seed = request.seed if request.seed is not None else self.spec.sampling.seed
        result = ChatResult()
        try:
            if request.n > 1 and self.server_ignores_n:
                await self._top_up(request, seed, result, have=0)
                return result
            self._take(await self._caller.call(self._payload(request, request.n, seed)), result, limit=request.n)
            if len(result.completions) < request.n:
                self.server_ignores_n = True
                await self._top_up(request, seed, result, have=len(result.completions))
        except CallFailed as exc:
            result.error = str(exc)
            if isinstance(exc, BreakerOpen):
                stopped.append(result.error)
        return result

    async def _top_up(self, request: ChatRequest, seed: int | None, result: ChatResult, have: int) -> None:
        """One n=1 request per missing choice, all at once; seeds differ so samples differ."""
        indices = range(have, request.n)
        calls = [self._caller.call(self._payload(request, 1, None if seed is None else seed + i)) for i in indices]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        failures = []
        for answer in answers:
            if isinstance(answer, BreakerOpen):
                raise answer  # the breaker's one message, not wrapped per request
            if isinstance(answer, CallFailed):
                failures.append(str(answer))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                self._take(answer, result, limit=1)
        del result.completions[request.n :]
        if failures:
            got = len(result.completions)
            raise CallFailed(f"got {got} of {request.n} choices; {failures[0]}")

    @staticmethod
    def _take(data: dict[str, Any], result: ChatResult, limit: int | None = None) -> None:
        for choice in data["choices"][:limit]:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            text = text if isinstance(text, str) else ""  # a tool call or garbled message: no text
            result.completions.append(Completion(text=text, finish_reason=choice.get("finish_reason")))
        prompt_tokens, completion_tokens = token_counts(data)
        result.prompt_tokens += prompt_tokens
        result.completion_tokens += completion_tokens

    async def aclose(self) -> None:
        await self._caller.aclose()
