"""A fault-injecting OpenAI-compatible server on loopback, scripted request by request.

Built on the benchmarks' fake server (benchmarks/servers/fake_openai.py). Each request takes
the next action of its prompt's script (keyed by the last message's content) or else of the
global script, then answers normally once the scripts run out. Actions:

    ok                 a normal answer (after the server's latency)
    429 | 500 | 4xx..  that status with a JSON error body (429 carries Retry-After)
    html               a 502 with an HTML error page, as proxies send
    slow               answers, but only after `slow_s` (past the client's deadline)
    drip               a 200 whose body arrives one byte every `drip_interval_s`
    truncated          a 200 whose JSON body is cut in half (Content-Length matches the cut)
    no_choices         a 200 with a completion object that has no `choices`
    reset_before       the connection is dropped before any response byte
    reset_mid          headers and half the body, then the connection is dropped
    delay:<seconds>    a normal answer after that many seconds
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from benchmarks.servers.fake_openai import FakeOpenAIServer, completion_body

HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class FaultServer(FakeOpenAIServer):
    def __init__(
        self,
        latency_s: float = 0.0,
        ignore_n: bool = False,
        retry_after: str = "0",
        slow_s: float = 5.0,
        drip_interval_s: float = 0.05,
        completion: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(latency_s=latency_s, ignore_n=ignore_n, fault=self._act)
        self.script: list[str] = []  # global, consumed in arrival order
        self.script_by_prompt: dict[str, list[str]] = {}
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.drip_interval_s = drip_interval_s
        self.completion = completion  # builds the body of normal answers (e.g. NIM logprobs)
        self.actions: list[tuple[str, str]] = []  # (prompt, action) per request

    def _next_action(self, prompt: str) -> str:
        own = self.script_by_prompt.get(prompt)
        if own:
            return own.pop(0)
        return self.script.pop(0) if self.script else "ok"

    def _normal_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.completion is not None:
            return self.completion(body)
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        return completion_body(body, [self.answer(body, i) for i in range(n)])

    async def _act(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | None:
        prompt = str(body["messages"][-1]["content"]) if body.get("messages") else ""
        action = self._next_action(prompt)
        self.actions.append((prompt, action))
        if action == "ok":
            if self.completion is None:
                return None  # the base server answers
            await asyncio.sleep(self.latency_s)
            return web.json_response(self.completion(body))
        if action.isdigit():
            status = int(action)
            headers = {"Retry-After": self.retry_after} if status == 429 else {}
            error = {"error": {"message": f"scripted {status}", "type": "server_error", "code": status}}
            return web.json_response(error, status=status, headers=headers)
        if action == "html":
            return web.Response(text=HTML_PAGE, status=502, content_type="text/html")
        if action == "slow":
            await asyncio.sleep(self.slow_s)
            return web.json_response(self._normal_body(body))
        if action.startswith("delay:"):
            await asyncio.sleep(float(action.split(":", 1)[1]))
            return web.json_response(self._normal_body(body))
        if action == "no_choices":
            return web.json_response({"id": "chatcmpl-x", "object": "chat.completion", "model": body.get("model")})
        payload = json.dumps(self._normal_body(body)).encode()
        if action == "truncated":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if action == "reset_before":
            request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        if action in ("drip", "reset_mid"):
            return await self._stream(request, payload, drop_half_way=action == "reset_mid")
        raise ValueError(f"unknown scripted action {action!r}")

    async def _stream(self, request: web.Request, payload: bytes, drop_half_way: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(payload)
        await response.prepare(request)
        try:
            if drop_half_way:
                await response.write(payload[: len(payload) // 2])
                await asyncio.sleep(0.01)  # let the half body leave before the drop
                request.transport.abort()
                return response
            for i in range(len(payload)):
                await response.write(payload[i : i + 1])
                await asyncio.sleep(self.drip_interval_s)
            await response.write_eof()
        except (ConnectionError, RuntimeError, AttributeError):
            pass  # the client gave up and closed: nothing left to send
        return response
