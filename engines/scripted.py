"""A scripted chat engine for tests: answers come from a function of the request, no model.

It speaks the same ChatEngine protocol as the real backends, so the tasks under test run the
very code path they run in production; only the text is scripted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engines.types import ChatRequest, ChatResult, Completion, Usage

Script = Callable[[ChatRequest], "str | Exception"]


class ScriptedChatEngine:
    backend = "scripted"

    def __init__(self, script: Script, model_name: str = "scripted"):
        self.script = script
        self.model_name = model_name
        self.usage = Usage()
        self.requests: list[ChatRequest] = []  # every request seen, for assertions

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        results = []
        for request in requests:
            self.requests.append(request)
            answers = [self.script(request) for _ in range(request.n)]
            failure = next((a for a in answers if isinstance(a, Exception)), None)
            self.usage.requests += 1
            if failure is not None:
                self.usage.errors += 1
                results.append(ChatResult(error=f"scripted failure: {failure}"))
                continue
            tokens = sum(len(a.split()) for a in answers)
            self.usage.completion_tokens += tokens
            results.append(ChatResult([Completion(a, "stop") for a in answers], completion_tokens=tokens))
        return results

    async def aclose(self) -> None:
        return None
