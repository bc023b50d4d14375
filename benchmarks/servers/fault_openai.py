"""A fault-injecting OpenAI-compatible server on loopback: scripted, random per attempt, saturated.

Built on the fake server (benchmarks/servers/fake_openai.py). Each request takes an action:

1. the next of its prompt's script (keyed by the last message's content), else of the global
   script (tests script faults request by request);
2. else one drawn from `mix` ({action: probability}, the rest answer normally). The draw is
   seeded by (seed, prompt, how many times this prompt came before): every client sees the
   same fault on the same attempt of the same request, so two clients compare on equal terms;
3. a normal answer, unless the server is saturated (`capacity`): with `saturation="queue"` a
   request arriving with more than `capacity` in flight waits `per_extra_s` more per extra
   request (it never refuses; everyone gets slower), with `saturation="429"` it is refused.

Actions:

    ok                 a normal answer (after the server's latency)
    429 | 500 | 4xx..  that status with a JSON error body (a 429 carries `retry_after` if set)
    html               a 502 with an HTML error page, as proxies send
    slow               answers, but only after `slow_s` (past the client's deadline)
    hang               never answers; ends when the client gives up
    drip               a 200 whose body arrives one byte every `drip_interval_s`
    truncated          a 200 whose JSON body is cut in half (Content-Length matches the cut)
    no_choices         a 200 with a completion object that has no `choices`
    reset_before       the connection is dropped before any response byte
    reset_mid          headers and half the body, then the connection is dropped
    delay:<seconds>    a normal answer after that many seconds

As a subprocess (benchmarks: its CPU is not the client's), it prints `PORT=<n>` and serves:

    python -m benchmarks.servers.fault_openai --latency 0.05 --mix 503=0.05,reset_before=0.03 --seed 1
    python -m benchmarks.servers.fault_openai --latency 0.05 --capacity 16 --saturation queue

`GET /v1/stats` adds the count of each action taken to the fake server's counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from benchmarks.servers.fake_openai import FakeOpenAIServer, completion_body, serve_until_killed, start_subprocess

HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
POLL_S = 0.05  # how often a slow or hanging handler looks whether its client has gone
SATURATIONS = ("queue", "429")


class FaultServer(FakeOpenAIServer):
    def __init__(
        self,
        latency_s: float = 0.0,
        ignore_n: bool = False,
        retry_after: str | None = "0",
        slow_s: float = 5.0,
        drip_interval_s: float = 0.05,
        completion: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        mix: dict[str, float] | None = None,
        seed: int = 0,
        capacity: int | None = None,
        saturation: str = "queue",
        per_extra_s: float | None = None,
    ) -> None:
        super().__init__(latency_s=latency_s, ignore_n=ignore_n, fault=self._act)
        if saturation not in SATURATIONS:
            raise ValueError(f"saturation must be one of {', '.join(SATURATIONS)}, got {saturation!r}")
        if mix and sum(mix.values()) > 1.0:
            raise ValueError(f"mix probabilities add up to {sum(mix.values()):g}, more than 1")
        for action in mix or {}:
            check_action(action)
        self.script: list[str] = []  # global, consumed in arrival order
        self.script_by_prompt: dict[str, list[str]] = {}
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.drip_interval_s = drip_interval_s
        self.completion = completion  # builds the body of normal answers (e.g. NIM logprobs)
        self.mix = dict(mix or {})
        self.seed = seed
        self.capacity = capacity
        self.saturation = saturation
        self.per_extra_s = latency_s if per_extra_s is None else per_extra_s
        self.actions: list[tuple[str, str]] = []  # (prompt, action) per request
        self.counts: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()  # attempts per prompt, for the seeded draw

    def _next_action(self, prompt: str) -> str:
        own = self.script_by_prompt.get(prompt)
        if own:
            return own.pop(0)
        if self.script:
            return self.script.pop(0)
        if self.mix:
            return self._draw(prompt)
        return "ok"

    def _draw(self, prompt: str) -> str:
        attempt = self._seen[prompt]
        self._seen[prompt] += 1
        x = random.Random(f"{self.seed}/{attempt}/{prompt}").random()
        for action, share in self.mix.items():
            if x < share:
                return action
            x -= share
        return "ok"

    def _normal_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.completion is not None:
            return self.completion(body)
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        return completion_body(body, [self.answer(body, i) for i in range(n)])

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": len(self.bodies), "in_flight": self.in_flight,
                                  "max_in_flight": self.max_in_flight, "actions": dict(self.counts)})

    async def _act(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | None:
        prompt = str(body["messages"][-1]["content"]) if body.get("messages") else ""
        action = self._next_action(prompt)
        if action == "ok" and self.capacity is not None and self.in_flight > self.capacity:
            action = "429" if self.saturation == "429" else f"delay:{self._queued_s()}"
        self.actions.append((prompt, action))
        self.counts[action if not action.startswith("delay:") else "queued"] += 1
        if action == "ok":
            if self.completion is None:
                return None  # the base server answers
            await asyncio.sleep(self.latency_s)
            return web.json_response(self.completion(body))
        if action.isdigit():
            return self._status(int(action))
        if action == "html":
            return web.Response(text=HTML_PAGE, status=502, content_type="text/html")
        if action in ("slow", "hang"):
            if not await self._wait_for_client(request, self.slow_s if action == "slow" else None):
                return web.Response()  # the client gave up: nobody reads this
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

    def _queued_s(self) -> float:
        extra = self.in_flight - (self.capacity or 0)
        return self.latency_s + self.per_extra_s * extra

    def _status(self, status: int) -> web.Response:
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after is not None else {}
        error = {"error": {"message": f"scripted {status}", "type": "server_error", "code": status}}
        return web.json_response(error, status=status, headers=headers)

    async def _wait_for_client(self, request: web.Request, seconds: float | None) -> bool:
        """Sleep `seconds` (None: for ever) while the client stays; False once it has gone.

        aiohttp does not cancel a handler whose client left, so a hanging one would hold its
        place in `in_flight` (and in a saturated server's count) long after the client gave up.
        """
        waited = 0.0
        while seconds is None or waited < seconds:
            transport = request.transport
            if transport is None or transport.is_closing():
                return False
            step = POLL_S if seconds is None else min(POLL_S, seconds - waited)
            await asyncio.sleep(step)
            waited += step
        return True

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


def check_action(action: str) -> str:
    named = {"ok", "html", "slow", "hang", "drip", "truncated", "no_choices", "reset_before", "reset_mid"}
    if action in named or (action.isdigit() and len(action) == 3) or action.startswith("delay:"):
        return action
    raise ValueError(f"unknown fault action {action!r}; allowed: {', '.join(sorted(named))}, a status, delay:<s>")


def parse_mix(text: str) -> dict[str, float]:
    """'503=0.05,reset_before=0.03' -> {'503': 0.05, 'reset_before': 0.03}."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        action, _, share = part.partition("=")
        mix[check_action(action.strip())] = float(share)
    return mix


def format_mix(mix: dict[str, float]) -> str:
    return ",".join(f"{action}={share:g}" for action, share in mix.items())


def spawn_fault_server(
    latency_s: float = 0.05, mix: dict[str, float] | None = None, seed: int = 0, retry_after: str | None = None,
    slow_s: float = 6.0, capacity: int | None = None, saturation: str = "queue",
) -> tuple[subprocess.Popen, str]:
    """Start the server as a subprocess; returns (process, base_url). The caller terminates it."""
    cmd = [sys.executable, "-m", "benchmarks.servers.fault_openai", "--latency", str(latency_s),
           "--seed", str(seed), "--slow", str(slow_s), "--saturation", saturation]
    cmd += ["--mix", format_mix(mix)] if mix else []
    cmd += ["--retry-after", retry_after] if retry_after is not None else []
    cmd += ["--capacity", str(capacity)] if capacity is not None else []
    return start_subprocess(cmd, "fault server")


async def _serve_forever(args: argparse.Namespace) -> None:
    server = FaultServer(latency_s=args.latency, retry_after=args.retry_after, slow_s=args.slow,
                         mix=parse_mix(args.mix), seed=args.seed, capacity=args.capacity,
                         saturation=args.saturation)
    await serve_until_killed(server, args.port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each normal answer")
    parser.add_argument("--mix", default="", help="action=probability,... drawn per attempt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", default=None, help="Retry-After of 429 answers (none by default)")
    parser.add_argument("--slow", type=float, default=6.0, help="seconds a 'slow' answer takes")
    parser.add_argument("--capacity", type=int, default=None, help="requests in flight before it saturates")
    parser.add_argument("--saturation", choices=SATURATIONS, default="queue",
                        help="past capacity: queue (slower per extra request) or 429")
    asyncio.run(_serve_forever(parser.parse_args()))


if __name__ == "__main__":
    main()
