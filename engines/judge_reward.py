"""The `llm-judge` reward backend: any chat engine grades the last assistant turn.

The judge is asked for the five HelpSteer2 attributes (0..4) as one JSON object, with a JSON
schema for backends that enforce it; answers from backends that do not are parsed robustly
(JSON inside chatter or code fences). An answer that still yields no usable grades is an
error on that result with the raw text kept, never a made-up score.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engines.config import ModelSpec
from engines.types import (
    HELPSTEER2_ATTRIBUTES,
    ChatEngine,
    ChatRequest,
    ChatResult,
    Message,
    RewardResult,
    Usage,
    aggregate_reward,
)

TEMPLATE_PATH = Path(__file__).with_name("templates") / "judge_attributes.txt"
RAW_KEPT_CHARS = 300
SCORE_RANGE = (0.0, 4.0)

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "integer", "minimum": 0, "maximum": 4} for name in HELPSTEER2_ATTRIBUTES},
    "required": list(HELPSTEER2_ATTRIBUTES),
    "additionalProperties": False,
}

_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class UnusableJudgeAnswer(ValueError):
    pass


@dataclass(frozen=True)
class JudgeTemplate:
    id: str
    version: str
    body: str

    def render(self, conversation: str, response: str) -> str:
        return self.body.format(conversation=conversation, response=response).strip()


@cache
def load_template(path: Path = TEMPLATE_PATH) -> JudgeTemplate:
    """Header lines `key: value`, a `---` line, then a str.format body (same layout as tasks/)."""
    head, sep, body = path.read_text(encoding="utf-8").partition("\n---\n")
    if not sep:
        raise ValueError(f"template {path}: no '---' line between header and body")
    header = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    header = {key.strip(): value.strip() for key, value in header.items()}
    return JudgeTemplate(header["id"], header["version"], body)


def transcript(messages: Sequence[Message]) -> str:
    return "\n\n".join(f"{m.get('role', 'user').upper()}: {m.get('content', '')}" for m in messages) or "(none)"


def _candidates(text: str) -> list[Any]:
    """JSON values found in the answer: the whole text, fenced blocks, then each `{` onwards."""
    found: list[Any] = []
    for chunk in [text, *_FENCED.findall(text)]:
        try:
            found.append(json.loads(chunk))
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            found.append(decoder.raw_decode(text, match.start())[0])
        except ValueError:
            pass
    return found


def parse_judge_answer(text: str) -> dict[str, float]:
    """The five grades from a judge's answer, or UnusableJudgeAnswer saying why.

    >>> parse_judge_answer('Sure! ```json\\n{"helpfulness": 3, "correctness": 4, "coherence": 4,'
    ...                    ' "complexity": 1, "verbosity": 2}\\n```')["correctness"]
    4.0
    """
    graded = [c for c in _candidates(text) if isinstance(c, dict) and set(HELPSTEER2_ATTRIBUTES) <= set(c)]
    if not graded:
        raise UnusableJudgeAnswer("no JSON object with all five attributes")
    grades: dict[str, float] = {}
    for name in HELPSTEER2_ATTRIBUTES:
        value = graded[0][name]
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise UnusableJudgeAnswer(f"{name}={graded[0][name]!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UnusableJudgeAnswer(f"{name}={value!r} is not a number")
        if not SCORE_RANGE[0] <= value <= SCORE_RANGE[1]:
            raise UnusableJudgeAnswer(f"{name}={value!r} is outside 0..4")
        grades[name] = float(value)
    return grades


class LLMJudgeRewardEngine:
    backend = "llm-judge"

    def __init__(self, name: str, spec: ModelSpec, chat_engine: ChatEngine) -> None:
        self.name = name
        self.spec = spec
        self.chat_engine = chat_engine
        self.model_name = spec.model or f"llm-judge:{chat_engine.model_name}"
        self.template = load_template()
        self.template_version = f"{self.template.id}@{self.template.version}"  # for lineage
        self.usage = Usage()

    def request_for(self, conversation: Sequence[Message]) -> ChatRequest:
        prompt = self.template.render(transcript(conversation[:-1]), conversation[-1].get("content", ""))
        # Greedy: the same conversation gets the same grades on a rerun.
        return ChatRequest(
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
            seed=self.spec.sampling.seed,
            json_schema=JUDGE_SCHEMA,
        )

    async def score(self, conversations: Sequence[list[Message]]) -> list[RewardResult]:
        started = time.monotonic()
        results: list[RewardResult | None] = [None] * len(conversations)
        asked: list[int] = []
        for i, conversation in enumerate(conversations):
            if not conversation or conversation[-1].get("role") != "assistant":
                results[i] = RewardResult(error="the conversation must end with an assistant turn to score")
            else:
                asked.append(i)
        answers = await self.chat_engine.chat([self.request_for(conversations[i]) for i in asked])
        for i, answer in zip(asked, answers, strict=True):
            results[i] = self._grade(answer)
        self.usage.requests += len(conversations)
        self.usage.errors += sum(1 for r in results if r is not None and not r.ok)
        self.usage.seconds += time.monotonic() - started
        return [r for r in results if r is not None]

    def _grade(self, answer: ChatResult) -> RewardResult:
        self.usage.prompt_tokens += answer.prompt_tokens
        self.usage.completion_tokens += answer.completion_tokens
        if not answer.ok:
            return RewardResult(error=f"judge {self.chat_engine.model_name!r} failed: {answer.error}")
        raw = answer.text or ""
        try:
            grades = parse_judge_answer(raw)
        except UnusableJudgeAnswer as exc:
            kept = raw if len(raw) <= RAW_KEPT_CHARS else raw[:RAW_KEPT_CHARS] + "..."
            return RewardResult(error=f"judge answer unusable ({exc}); raw: {kept!r}")
        return RewardResult(attributes=grades, reward=aggregate_reward(grades, self.spec.reward_weights))

    async def aclose(self) -> None:
        """The chat engine is the registry's (it may serve others too): it closes it."""
