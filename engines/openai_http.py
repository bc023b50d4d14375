"""One POST to an OpenAI-compatible `/chat/completions`, with our own retries and window.

Shared by the chat engine and the NIM reward engine. The openai client (on aiohttp) does the
HTTP; its own retries are off because it misreads some faults:

- its timeout bounds each socket read, not the request, so a server that drips bytes never
  times out: every try here runs under its own total deadline (`asyncio.timeout`);
- it reports a reset connection as a timeout, and a 200 whose body is truncated JSON or has
  no `choices` is not an error to it: here all of these are retryable faults.

We take the raw response (`cast_to=httpx2.Response`, the client's documented route for raw
calls) and parse the JSON ourselves: it skips building pydantic models on the hot path and
puts a bad body in our hands. After the last try the call raises `CallFailed`, whose message
names the server, the model, the fault and the number of tries.

Only load faults (429, 503, 504, our deadline) count towards shrinking the window; the rest are
retried. A retry waits a full-jitter backoff whose first step is about two answers' time (so a
server answering in 50 ms is retried within 0.1 s, one answering in 10 s after up to
`backoff_base_s`), a quarter of that after a fault that says nothing about load, or what
Retry-After asks. A circuit breaker (engines/breaker.py) over the last attempts stops sending
past `max_error_rate` and ends the waiting requests with `BreakerOpen`, one message for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI, DefaultAioHttpClient

from engines.breaker import CircuitBreaker
from engines.config import ModelSpec
from engines.engine_loop import EngineLoop
from engines.types import Usage
from engines.window import AdaptiveWindow

RETRYABLE_4XX = (408, 409, 429)
LOAD_STATUSES = (429, 503, 504)  # the server says it is busy; a 500 or a 502 says nothing about load
MIN_BACKOFF_STEP_S = 0.01
RETRY_AFTER_CAP_S = 60.0  # a server asking for longer than this is treated as down, not busy
DETAIL_CHARS = 200


class CallFailed(Exception):
    """A call that failed after its last try; the message is what a result records."""


class BreakerOpen(CallFailed):
    """A call ended by the open circuit breaker: the same message for every such call."""


class EngineUnavailable(Exception):
    """Raised out of a batch when the breaker opened and the spec says `on_breaker: fail`."""


@dataclass
class Fault(Exception):
    kind: str  # "http 503", "timeout", "connection", "bad body", "no choices", ...
    detail: str = ""
    retryable: bool = True
    load: bool = False  # a sign the server is saturated: the window may shrink
    retry_after_s: float | None = None


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[:DETAIL_CHARS] + "..."


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, moment.timestamp() - time.time()) if moment else None


def classify(exc: BaseException, timeout_s: float) -> Fault:
    """What an exception from one try means for retrying and for the window."""
    if isinstance(exc, Fault):
        return exc
    if isinstance(exc, TimeoutError):  # our total deadline
        return Fault("timeout", f"no complete answer within {timeout_s:g}s", load=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in RETRYABLE_4XX or status >= 500
        return Fault(
            f"http {status}",
            _snippet(exc.response.text) if exc.response is not None else "",
            retryable=retryable,
            load=status in LOAD_STATUSES,
            retry_after_s=parse_retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.APITimeoutError):  # the client says this for resets too
        return Fault("connection dropped or timed out", str(exc.__cause__ or exc))
    if isinstance(exc, openai.APIConnectionError):
        return Fault("connection error", str(exc.__cause__ or exc))
    if isinstance(exc, (ValueError, UnicodeDecodeError)):  # JSONDecodeError is a ValueError
        return Fault("bad body", str(exc))
    return Fault(f"unexpected {type(exc).__name__}", str(exc), retryable=False)


def parse_completion(response: httpx2.Response) -> dict[str, Any]:
    """The JSON of a 200 answer, or a Fault when it is not a chat completion."""
    try:
        data = json.loads(response.content)
    except ValueError as exc:
        raise Fault("bad body", f"{exc}; body: {_snippet(response.text)}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list):
        raise Fault("no choices", f"body: {_snippet(response.text)}")
    if not all(isinstance(choice, dict) for choice in choices):
        raise Fault("bad body", f"choices are not objects: {_snippet(response.text)}")
    return data


class ChatCompletionsCaller:
    """AsyncOpenAI on aiohttp + an adaptive window + retries with full-jitter backoff + a breaker.

    `usage` counts calls (a top-up request is a call), failed calls and tokens; engines add
    the seconds of their batches. Calls run on `self.loop` (see engines/engine_loop.py):
    engines hand it each whole batch with `await caller.loop.run(...)`.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 20.0,
        start_window: int | None = None,
    ) -> None:
        self.base_url = spec.base_url or ""
        self.model = spec.model or ""
        self.timeout_s = spec.timeout_s
        self.tries = spec.max_retries + 1
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        limits = httpx2.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        self.client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "sdg-no-key",  # local servers need none; the client insists on one
            max_retries=0,
            timeout=spec.timeout_s,
            http_client=DefaultAioHttpClient(limits=limits),
        )
        # Slow start from a few requests: a server that queues instead of refusing is slow for
        # every request sent past its capacity, so a full first burst would cost seconds there.
        self.window = AdaptiveWindow(spec.concurrency, start_size=start_window)
        self.breaker = CircuitBreaker(spec.max_error_rate, spec.error_window, spec.breaker_cooldown_s)
        self.loop = EngineLoop(spec.model or "openai")
        self.usage = Usage()
        self.retries = 0

    def _backoff_s(self, attempt: int, fault: Fault) -> float:
        # The first step is two answers' time: a retry is not a burden a busy server must wait
        # out for seconds when it answers in 50 ms, and it stays `backoff_base_s` for slow servers.
        typical = self.window.typical_s
        step = self.backoff_base_s if typical is None else min(self.backoff_base_s, 2 * typical)
        step = max(MIN_BACKOFF_STEP_S, step)
        if fault.retry_after_s is not None:  # the server said when; a little jitter avoids a herd
            return min(fault.retry_after_s, RETRY_AFTER_CAP_S) + random.uniform(0.0, step)
        if not fault.load:
            step /= 4  # a reset or a garbled body is no reason to wait: retry at once, spread a little
        ceiling = min(self.backoff_cap_s, step * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)  # full jitter: the retries of a burst spread out

    async def call(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The parsed completion, or CallFailed (BreakerOpen when the breaker ended it) after the last try."""
        fault = Fault("not tried")
        tries = 0
        for attempt in range(self.tries):
            if attempt:
                self.retries += 1
                await self._pause(self._backoff_s(attempt, fault))  # holds no window slot
            tries += 1
            try:
                data = await self._attempt(payload)
            except BreakerOpen:
                self._count_failure()
                raise
            except Fault as failed:
                fault = failed
                if not fault.retryable:
                    break
                continue
            self._count(data)
            return data
        self._count_failure()
        detail = f": {fault.detail}" if fault.detail else ""
        raise CallFailed(
            f"{self.base_url} model {self.model!r}: {fault.kind} after {tries} "
            f"{'try' if tries == 1 else 'tries'}{detail}"
        )

    async def _attempt(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One try: the parsed completion, or the Fault it met (BreakerOpen when none may be sent)."""
        admission = await self.breaker.admit()
        if admission == "refuse":
            raise self._breaker_failure()
        try:
            slot = await self.window.acquire()
        except BaseException:
            if admission == "probe":
                self.breaker.abandon_probe()
            raise
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.post("/chat/completions", cast_to=httpx2.Response, body=payload)
            data = parse_completion(response)
        except asyncio.CancelledError:
            self.window.release(slot, "cancelled")
            if admission == "probe":
                self.breaker.abandon_probe()
            raise
        except Exception as exc:
            fault = classify(exc, self.timeout_s)
            self.window.release(slot, "load" if fault.load else "fault")
            if self.breaker.record(fault.kind):
                self.window.fail_waiters(self._breaker_failure)
            if self.breaker.is_open:
                raise self._breaker_failure() from None
            raise fault from None
        self.window.release(slot, "ok", tokens=token_counts(data)[1])
        self.breaker.record(None)
        return data

    async def _pause(self, seconds: float) -> None:
        """Sleep before a retry, cut short when the breaker opens (the retry is then refused)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.breaker.opened.wait(), seconds)

    def _breaker_failure(self) -> BreakerOpen:
        return BreakerOpen(f"{self.base_url} model {self.model!r}: {self.breaker.message}")

    def _count(self, data: dict[str, Any]) -> None:
        self.usage.requests += 1
        prompt_tokens, completion_tokens = token_counts(data)
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens

    def _count_failure(self) -> None:
        self.usage.requests += 1
        self.usage.errors += 1

    async def aclose(self) -> None:
        """Close the client on the loop it lives on, then end that loop; callable from any loop."""
        await self.loop.stop(self.client.close)


def token_counts(data: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens of an answer; 0 where a server leaves them out or garbles them."""
    used = data.get("usage")
    if not isinstance(used, dict):
        return 0, 0
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        value = used.get(key)
        counts.append(value if isinstance(value, int) and value >= 0 else 0)
    return counts[0], counts[1]

