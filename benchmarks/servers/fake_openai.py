"""A small OpenAI-compatible chat server on loopback, for tests and benchmarks.

It answers `/v1/chat/completions` after a fixed latency with text from a hook (scripted
answers), honours or ignores `n`, and lets a subclass or a caller replace the answer of any
request with a fault (see tests/engines/fault_server.py). It runs in a thread of the caller
(tests that script it) or as a subprocess (benchmarks, so its CPU is not the client's):

    python -m benchmarks.servers.fake_openai --latency 0.1 [--answers-file a.jsonl | --varied | --preferences] [--ignore-n]

prints `PORT=<n>` once it listens, then serves until killed. `GET /v1/stats` says how many chat
requests it has taken, how many it holds now and the most it held at once (benchmarks count requests there).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

AnswerHook = Callable[[dict[str, Any], int], str]  # (request body, choice index) -> answer text
FaultHook = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse | None]]


def echo_answer(body: dict[str, Any], index: int) -> str:
    """Default answer: names the choice and echoes the last message, so order is checkable."""
    last = body["messages"][-1]["content"] if body.get("messages") else ""
    return f"answer {index} to: {last}"


def cycling_answers(texts: list[str]) -> AnswerHook:
    """An answer hook that hands out the given texts in turn (scripted answers)."""
    pool = itertools.cycle(texts)
    return lambda body, index: next(pool)


def varied_lists(items: int = 10, seed: int = 0) -> AnswerHook:
    """An answer hook whose every answer is a fresh numbered list of question-like lines.

    Lines are drawn from a vocabulary of made-up words, so no two answers (or lines) are exact or
    near duplicates: a pipeline's de-duplication keeps them all, as it would real model output.
    Tasks that want one text (a rewrite, a reply) take the whole list as that text.
    """
    import random

    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "so", "vi", "del", "bar", "qui", "zen", "pos", "gra"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=3)) for _ in range(6000)})
    lock = threading.Lock()  # hooks of the threaded server may run while a test thread reads

    def answer(body: dict[str, Any], index: int) -> str:
        with lock:
            lines = [" ".join(rng.choices(vocabulary, k=rng.randint(9, 14))) for _ in range(items)]
        return "\n".join(f"{i}. How would {line}?" for i, line in enumerate(lines, 1))

    return answer


def keyed_lists(items: int = 4) -> AnswerHook:
    """Like `varied_lists`, but each answer is drawn from the request itself (its messages and seed):
    the same request always gets the same list, in any order and in any process, so two runs that
    send the same requests (a rerun, the Dask path) must end with the same rows."""
    import hashlib
    import json
    import random

    words = ["amber", "basil", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "jasper", "kelp",
             "lumen", "maple", "nectar", "onyx", "prairie", "quartz", "reef", "sierra", "tundra"]

    def answer(body: dict[str, Any], index: int) -> str:
        key = json.dumps([body.get("messages"), body.get("seed")], sort_keys=True)
        rng = random.Random(hashlib.sha256(key.encode()).digest())
        lines = [" ".join(rng.choices(words, k=12)) for _ in range(items)]
        return "\n".join(f"{i}. How would {line} change?" for i, line in enumerate(lines, 1))

    return answer


def preference_answers(responses_per_prompt: int = 4, seed: int = 0) -> AnswerHook:
    """An answer hook for the preferences stage, answering by what the request asks (no shared state
    with the client, so it runs in the server subprocess):

    - the pairwise judge ("=== Reply A ==="): the letter of the reply marked GOOD (A when both are);
    - the attribute grader of the llm-judge reward ("Give the reply five grades"): high grades for a
      reply marked GOOD, low ones otherwise, as JSON;
    - the simulated user of the dialogues stage ("Write the next message this person sends"): a
      fresh follow-up question;
    - anything else is a generation request: of the `responses_per_prompt` requests for the same
      question (counted by its text), the first half are answered well (marked GOOD, no commas, the
      right sum when the question asks "What is <a> plus <b>?") and the rest badly (commas, the sum
      off by one). Every answer carries fresh made-up words, so no two are near duplicates.
    """
    import random
    import re
    from collections import Counter

    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "so", "vi", "del", "bar", "qui", "zen", "pos", "gra"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=3)) for _ in range(6000)})
    good_grades = json.dumps({"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2})
    bad_grades = json.dumps({"helpfulness": 1, "correctness": 1, "coherence": 1, "complexity": 1, "verbosity": 1})
    plus = re.compile(r"What is (\d+) plus (\d+)")
    asked: Counter[str] = Counter()
    lock = threading.Lock()  # hooks of the threaded server may run while a test thread reads

    def answer(body: dict[str, Any], index: int) -> str:
        text = str(body["messages"][-1]["content"]) if body.get("messages") else ""
        if "=== Reply A ===" in text:
            reply_a, _, reply_b = text.split("=== Reply A ===", 1)[1].partition("=== Reply B ===")
            return "A" if "GOOD" in reply_a or "GOOD" not in reply_b else "B"
        if "Give the reply five grades" in text:
            reply = text.split("The reply to grade:", 1)[-1].split(">>>", 1)[0]
            return good_grades if "GOOD" in reply else bad_grades
        if "Write the next message this person sends" in text:
            with lock:
                words = " ".join(rng.choices(vocabulary, k=rng.randint(8, 14)))
            return f"Could you go further on {words}?"
        with lock:
            nth = asked[text]
            asked[text] += 1
            words = " ".join(rng.choices(vocabulary, k=rng.randint(20, 40)))
        total = sum(map(int, found.groups())) if (found := plus.search(text)) else 72
        if nth % responses_per_prompt < responses_per_prompt // 2:
            return f"GOOD reply in plain words {words} and the answer is {total}"
        return f"bad reply, with commas, {words}, and the answer is {total + 1}"

    return answer


def completion_body(body: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """A chat.completion object in the shape OpenAI-compatible servers answer."""
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": sum(len(t.split()) for t in texts),
            "total_tokens": prompt_tokens + sum(len(t.split()) for t in texts),
        },
    }


class FakeOpenAIServer:
    """aiohttp.web app with an answer hook, a fault hook and in-flight accounting."""

    def __init__(
        self,
        latency_s: float = 0.0,
        answer: AnswerHook = echo_answer,
        ignore_n: bool = False,
        fault: FaultHook | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.answer = answer
        self.ignore_n = ignore_n
        self.fault = fault
        self.bodies: list[dict[str, Any]] = []  # every request body, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": len(self.bodies), "in_flight": self.in_flight,
                                  "max_in_flight": self.max_in_flight})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.fault is not None:
                faulty = await self.fault(request, body)
                if faulty is not None:
                    return faulty
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            n = 1 if self.ignore_n else int(body.get("n") or 1)
            return web.json_response(completion_body(body, [self.answer(body, i) for i in range(n)]))
        finally:
            self.in_flight -= 1

    async def start_async(self, port: int = 0) -> int:
        # A short shutdown grace: dripping or sleeping handlers must not hold a test's teardown.
        self._runner = web.AppRunner(self.make_app(), shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port the OS picked
        return self.port

    def start(self) -> FakeOpenAIServer:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start in 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        # Handlers still sleeping (slow or dripping answers) end here, not at interpreter exit.
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_server(
    latency_s: float = 0.1, answers_file: str | None = None, ignore_n: bool = False, varied: bool = False,
    preferences: bool = False,
) -> tuple[subprocess.Popen, str]:
    """Start the server as a subprocess; returns (process, base_url). The caller terminates it."""
    cmd = [sys.executable, "-m", "benchmarks.servers.fake_openai", "--latency", str(latency_s)]
    cmd += ["--answers-file", answers_file] if answers_file else []
    cmd += ["--ignore-n"] if ignore_n else []
    cmd += ["--varied"] if varied else []
    cmd += ["--preferences"] if preferences else []
    return start_subprocess(cmd, "fake OpenAI server")


def start_subprocess(cmd: list[str], what: str) -> tuple[subprocess.Popen, str]:
    """Run a server module from the repository root and wait for its `PORT=<n>` line; (process, base_url)."""
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT="):
        proc.kill()
        raise RuntimeError(f"{what} did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split('=', 1)[1])}/v1"


def _read_answers(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]  # one JSON string per line


async def _serve_forever(args: argparse.Namespace) -> None:
    answer = echo_answer
    if args.answers_file:
        answer = cycling_answers(_read_answers(args.answers_file))
    elif args.varied:
        answer = varied_lists()
    elif args.preferences:
        answer = preference_answers()
    await serve_until_killed(FakeOpenAIServer(latency_s=args.latency, answer=answer, ignore_n=args.ignore_n), args.port)


async def serve_until_killed(server: FakeOpenAIServer, port: int) -> None:
    """Listen, say `PORT=<n>` on stdout (what spawn_server waits for), serve until the process is killed."""
    print(f"PORT={await server.start_async(port)}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each answer")
    parser.add_argument("--answers-file", help="JSON lines, one answer string each, served in turn")
    parser.add_argument("--varied", action="store_true", help="answer fresh numbered lists (see varied_lists)")
    parser.add_argument("--preferences", action="store_true",
                        help="answer the preferences stage by request content (see preference_answers)")
    parser.add_argument("--ignore-n", action="store_true", help="answer one choice whatever n asks")
    asyncio.run(_serve_forever(parser.parse_args()))


if __name__ == "__main__":
    main()
