"""Engines built from the registry by name, once per process, closed together.

Heavy backends (transformers/torch, vllm) are imported only when a spec selects them. The
openai engine, a base dependency, is imported with the registry: a Prefect worker loads the
flow's module before the run starts, so its ~0.7 s import is not paid inside a flow run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from engines.config import ModelSpec
from engines.openai_chat import OpenAIChatEngine
from engines.types import ChatEngine, RewardEngine, Usage

_lock = threading.RLock()  # re-entrant: an llm-judge or logprob reward engine builds its chat engine
_engines: dict[tuple[str, str], ChatEngine | RewardEngine] = {}
_open_scopes = 0


class UnknownModel(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; say it plainly
        return str(self.args[0])


def _spec(name: str, registry: Mapping[str, ModelSpec], kind: str) -> ModelSpec:
    if name not in registry:
        known = ", ".join(sorted(registry)) or "(none)"
        raise UnknownModel(f"model {name!r} is not in the registry; known: {known}")
    spec = registry[name]
    if spec.kind != kind:
        raise ValueError(f"model {name!r} is a {spec.kind} model, not a {kind} model")
    return spec


def build_chat_engine(name: str, spec: ModelSpec) -> ChatEngine:
    if spec.backend == "openai":
        return OpenAIChatEngine(name, spec)
    if spec.backend == "transformers":
        from engines.transformers_chat import TransformersChatEngine

        return TransformersChatEngine(name, spec)
    if spec.backend == "vllm":
        from engines.vllm_engine import VLLMChatEngine

        return VLLMChatEngine(name, spec)
    raise ValueError(f"backend {spec.backend!r} has no chat engine; allowed: openai, transformers, vllm")


def build_reward_engine(name: str, spec: ModelSpec, registry: Mapping[str, ModelSpec]) -> RewardEngine:
    if spec.backend == "transformers":
        from engines.transformers_reward import TransformersRewardEngine

        return TransformersRewardEngine(name, spec)
    if spec.backend == "vllm":
        from engines.vllm_engine import VLLMRewardEngine

        return VLLMRewardEngine(name, spec)
    if spec.backend == "nim":
        from engines.nim_reward import NIMRewardEngine

        return NIMRewardEngine(name, spec)
    if spec.backend == "llm-judge":
        from engines.judge_reward import LLMJudgeRewardEngine

        return LLMJudgeRewardEngine(name, spec, get_chat_engine(spec.judge, registry))
    if spec.backend == "logprob":
        from engines.logprob_judge import LogprobJudgeRewardEngine

        judge = get_chat_engine(spec.judge, registry) if spec.judge else None
        return LogprobJudgeRewardEngine(name, spec, judge)
    raise ValueError(
        f"backend {spec.backend!r} has no reward engine; allowed: transformers, vllm, nim, llm-judge, logprob"
    )


def get_chat_engine(name: str, registry: Mapping[str, ModelSpec]) -> ChatEngine:
    spec = _spec(name, registry, "chat")
    with _lock:
        key = ("chat", name)
        if key not in _engines:
            _engines[key] = build_chat_engine(name, spec)
        return _engines[key]  # type: ignore[return-value]


def get_reward_engine(name: str, registry: Mapping[str, ModelSpec]) -> RewardEngine:
    spec = _spec(name, registry, "reward")
    with _lock:
        key = ("reward", name)
        if key not in _engines:
            _engines[key] = build_reward_engine(name, spec, registry)
        return _engines[key]  # type: ignore[return-value]


def open_engines() -> dict[tuple[str, str], ChatEngine | RewardEngine]:
    with _lock:
        return dict(_engines)


@asynccontextmanager
async def engine_scope() -> AsyncIterator[None]:
    """Engines opened inside stay open until the outermost scope ends, then close together.

    A nightly run opens one scope around its stages, so the second stage reuses the model the
    first one loaded; a stage run on its own is the outermost scope and closes what it opened.
    """
    global _open_scopes
    with _lock:
        _open_scopes += 1
    try:
        yield
    finally:
        with _lock:
            _open_scopes -= 1
            last = _open_scopes == 0
        if last:
            await aclose_all()


UsageKey = tuple[str, str]  # (model name, backend)


def usage_snapshot() -> dict[UsageKey, Usage]:
    """What every open engine has used so far, per model and backend (copies)."""
    totals: dict[UsageKey, Usage] = {}
    for engine in open_engines().values():
        totals.setdefault((engine.model_name, engine.backend), Usage()).add(engine.usage)
    return totals


def usage_since(before: Mapping[UsageKey, Usage]) -> dict[UsageKey, Usage]:
    """What the engines used since `before` (a usage_snapshot): a stage's own cost, with shared engines."""
    spent = {}
    for key, now in usage_snapshot().items():
        then = before.get(key, Usage())
        delta = Usage(**{f.name: getattr(now, f.name) - getattr(then, f.name) for f in dataclasses.fields(Usage)})
        if delta.requests or delta.errors or delta.prompt_tokens or delta.completion_tokens:
            spent[key] = delta
    return spent


async def aclose_all() -> None:
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        await engine.aclose()


def close_all() -> None:
    asyncio.run(aclose_all())
