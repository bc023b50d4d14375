"""vLLM in-process backend: one `LLM` per engine, a whole batch per call.

vllm is imported only when an engine is built, so the rest of `engines/` works without it.
Every call into vLLM blocks, so it runs in a worker thread (`asyncio.to_thread`) and the event
loop stays free for other engines. vLLM spawns worker processes: scripts that build these
engines must be guarded with `if __name__ == "__main__"`.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Sequence
from typing import Any

from engines.config import ModelSpec
from engines.types import (
    HELPSTEER2_ATTRIBUTES,
    ChatRequest,
    ChatResult,
    Completion,
    Message,
    RewardResult,
    Usage,
    aggregate_reward,
)


_live_llms = 0  # engines' own LLMs still open: process-wide vLLM state is torn down at zero


def _build_llm(spec: ModelSpec, **llm_options: Any):
    global _live_llms
    from vllm import LLM

    options: dict[str, Any] = dict(
        model=spec.model,
        dtype=spec.dtype,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        tensor_parallel_size=spec.tensor_parallel_size,
        seed=spec.sampling.seed if spec.sampling.seed is not None else 0,
    )
    if spec.max_model_len is not None:
        options["max_model_len"] = spec.max_model_len
    llm = LLM(**options, **llm_options)
    _live_llms += 1
    return llm


def _release(llm) -> None:
    """Stop the engine's workers and, once no engine LLM is left, vLLM's process-wide state."""
    global _live_llms
    if llm is None:
        return
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None and hasattr(engine_core, "shutdown"):
        engine_core.shutdown()  # stops the engine's worker processes now, not at interpreter exit
    del llm
    _live_llms -= 1
    if _live_llms == 0:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    gc.collect()


class VLLMChatEngine:
    """`ChatEngine` over `LLM.chat`: one call per batch, one SamplingParams per request.

    `llm` lets a caller hand in an `LLM` it already built (one model load per process, e.g. a
    benchmark that also calls vLLM raw); the engine then does not own it and `aclose` keeps it.
    `llm_options` go to `LLM(...)` as they are (e.g. enforce_eager=True to skip compilation).
    """

    backend = "vllm"

    def __init__(self, name: str, spec: ModelSpec, llm=None, *, ignore_eos: bool = False, **llm_options: Any) -> None:
        self.name = name
        self.spec = spec
        self.model_name = spec.model or name
        self.usage = Usage()
        self.ignore_eos = ignore_eos  # benchmarks: every row runs to max_tokens
        self._lock = threading.Lock()  # one LLM call at a time: vllm.LLM is not thread-safe
        self._owns_llm = llm is None
        self._llm = llm if llm is not None else _build_llm(spec, runner="generate", **llm_options)

    @property
    def llm(self):
        """The underlying `vllm.LLM` (benchmarks call it raw next to the engine)."""
        return self._llm

    def sampling_params(self, request: ChatRequest):
        """The request's SamplingParams, unset fields taken from the spec's sampling defaults."""
        from vllm import SamplingParams

        defaults = self.spec.sampling
        options: dict[str, Any] = dict(
            n=request.n,
            temperature=defaults.temperature if request.temperature is None else request.temperature,
            top_p=defaults.top_p if request.top_p is None else request.top_p,
            max_tokens=request.max_tokens or defaults.max_tokens,
            seed=defaults.seed if request.seed is None else request.seed,
            stop=request.stop or None,
            ignore_eos=self.ignore_eos,
        )
        if request.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            options["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        return SamplingParams(**options)

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        started = time.perf_counter()
        results = await asyncio.to_thread(self._chat_locked, list(requests))
        self._count(results, time.perf_counter() - started)
        return results

    def _chat_locked(self, requests: list[ChatRequest]) -> list[ChatResult]:
        with self._lock:
            if self._llm is None:
                raise RuntimeError(f"vllm engine {self.name!r} is closed")
            return self._chat_blocking(requests)

    def _chat_blocking(self, requests: list[ChatRequest]) -> list[ChatResult]:
        try:
            return self._chat_all(requests)
        except Exception as exc:  # noqa: BLE001 - recorded on the results, as the protocol asks
            if len(requests) == 1:
                return [ChatResult(error=f"vllm {self.model_name}: {type(exc).__name__}: {exc}")]
        # vLLM validates the whole batch up front (a too-long prompt, a bad schema): find the
        # culprits one by one so the other requests still get answers.
        return [self._chat_blocking([r])[0] for r in requests]

    def _chat_all(self, requests: list[ChatRequest]) -> list[ChatResult]:
        params = [self.sampling_params(r) for r in requests]
        outputs = self._llm.chat([r.messages for r in requests], params, use_tqdm=False)
        return [_chat_result(out, self.model_name) for out in outputs]

    def _count(self, results: list[ChatResult], seconds: float) -> None:
        self.usage.add(
            Usage(
                requests=len(results),
                prompt_tokens=sum(r.prompt_tokens for r in results),
                completion_tokens=sum(r.completion_tokens for r in results),
                errors=sum(not r.ok for r in results),
                seconds=seconds,
            )
        )

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # waits for a running call rather than freeing the LLM under it
            llm, self._llm = self._llm, None
            if self._owns_llm:
                _release(llm)


def _chat_result(out, model_name: str) -> ChatResult:
    if getattr(out, "error", None) is not None:
        return ChatResult(error=f"vllm {model_name}: {out.error.code}: {out.error.message}")
    return ChatResult(
        completions=[Completion(text=c.text, finish_reason=c.finish_reason) for c in out.outputs],
        prompt_tokens=len(out.prompt_token_ids or ()),
        completion_tokens=sum(len(c.token_ids) for c in out.outputs),
    )


def attribute_names(id2label: dict[int, str] | None, num_labels: int) -> list[str]:
    """Names for the head's outputs: 5 -> the HelpSteer2 attributes, 1 -> a plain reward.

    The model's own labels win when they are the HelpSteer2 names (in any order).

    >>> attribute_names({0: "LABEL_0"}, 1)
    ['reward']
    >>> attribute_names({i: n for i, n in enumerate(reversed(HELPSTEER2_ATTRIBUTES))}, 5)[0]
    'verbosity'
    """
    labels = [str((id2label or {}).get(i, "")).lower() for i in range(num_labels)]
    if num_labels == len(HELPSTEER2_ATTRIBUTES):
        return labels if sorted(labels) == sorted(HELPSTEER2_ATTRIBUTES) else list(HELPSTEER2_ATTRIBUTES)
    if num_labels == 1:
        return ["reward"]
    raise ValueError(
        f"a reward model needs 5 outputs (the HelpSteer2 attributes) or 1 (a plain reward), not {num_labels}"
    )


class VLLMRewardEngine:
    """`RewardEngine` over vLLM's pooling runner: `LLM.classify`, raw head outputs, last token."""

    backend = "vllm"

    def __init__(self, name: str, spec: ModelSpec, llm=None, **llm_options: Any) -> None:
        self.name = name
        self.spec = spec
        self.model_name = spec.model or name
        self.usage = Usage()
        self._lock = threading.Lock()  # one LLM call at a time: vllm.LLM is not thread-safe
        self._owns_llm = llm is None
        self._llm = llm if llm is not None else _build_llm(spec, runner="pooling", **llm_options)
        hf_config = self._llm.llm_engine.model_config.hf_config
        num_labels = int(getattr(hf_config, "num_labels", len(getattr(hf_config, "id2label", {}) or {})))
        self.attributes = attribute_names(getattr(hf_config, "id2label", None), num_labels)
        self._tokenizer = self._llm.get_tokenizer()

    async def score(self, conversations: Sequence[list[Message]]) -> list[RewardResult]:
        if not conversations:
            return []
        started = time.perf_counter()
        results, prompt_tokens = await asyncio.to_thread(self._score_blocking, list(conversations))
        self.usage.add(
            Usage(
                requests=len(results),
                prompt_tokens=prompt_tokens,
                errors=sum(not r.ok for r in results),
                seconds=time.perf_counter() - started,
            )
        )
        return results

    def _token_ids(self, conversation: list[Message]) -> list[int]:
        # Rendered as text, then tokenized without special tokens: the chat template already
        # places them, and tokenizing with them would add a second BOS.
        text = self._tokenizer.apply_chat_template(conversation, tokenize=False)
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _score_blocking(self, conversations: list[list[Message]]) -> tuple[list[RewardResult], int]:
        with self._lock:
            if self._llm is None:
                raise RuntimeError(f"vllm engine {self.name!r} is closed")
            return self._score_locked(conversations)

    def _score_locked(self, conversations: list[list[Message]]) -> tuple[list[RewardResult], int]:
        from vllm import PoolingParams

        results: list[RewardResult | None] = [None] * len(conversations)
        prompts, positions = [], []
        for i, conversation in enumerate(conversations):
            try:
                prompts.append({"prompt_token_ids": self._token_ids(conversation)})
                positions.append(i)
            except Exception as exc:  # noqa: BLE001 - a conversation the template rejects
                results[i] = RewardResult(error=f"chat template: {type(exc).__name__}: {exc}")
        # Raw head outputs: the attributes are regression scores, not class probabilities.
        params = PoolingParams(use_activation=False)
        try:
            outputs = self._llm.classify(prompts, pooling_params=params, use_tqdm=False) if prompts else []
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: say so per row
            outputs = None
            for i in positions:
                results[i] = RewardResult(error=f"vllm {self.model_name}: {type(exc).__name__}: {exc}")
        for i, out in zip(positions, outputs or ()):
            if getattr(out, "error", None) is not None:
                results[i] = RewardResult(error=f"vllm {self.model_name}: {out.error.code}: {out.error.message}")
            else:
                results[i] = self._reward(out.outputs.probs)
        return [r for r in results if r is not None], sum(len(p["prompt_token_ids"]) for p in prompts)

    def _reward(self, values: Sequence[float]) -> RewardResult:
        if len(values) != len(self.attributes):
            return RewardResult(error=f"expected {len(self.attributes)} outputs, got {len(values)}")
        if self.attributes == ["reward"]:
            return RewardResult(attributes={}, reward=float(values[0]))
        attributes = {name: float(v) for name, v in zip(self.attributes, values)}
        return RewardResult(attributes=attributes, reward=aggregate_reward(attributes, self.spec.reward_weights))

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # waits for a running call rather than freeing the LLM under it
            llm, self._llm = self._llm, None
            if self._owns_llm:
                _release(llm)
