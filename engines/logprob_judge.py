"""The `logprob` reward backend: a chat model's token probabilities, never its generated text.

For each reply it reads (engines/logprob_prompts.py) the probabilities of the digits 0..4 after
a rubric question per attribute, and the reply's log-likelihood with and without its question;
engines/logprob_signals.py turns those into the five HelpSteer2 attributes (rules there) and
the spec's weights into `reward`. Nothing is parsed from generated text, so a reading always
yields a score; a backend that cannot give the probabilities (a server that ignores
`logprobs`) puts an `error` on each result naming the server and what was missing.

Backends, chosen by the judge's chat engine:
- transformers (also the default: no `judge` means the embedded SmolLM2): batched forward
  passes on the torch thread, reusing an already loaded chat engine's model;
- vllm: the chat engine's in-process `LLM` (engines/logprob_remote.py);
- openai: an OpenAI-compatible server with logprobs (engines/logprob_remote.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from engines import torch_thread
from engines.config import ModelSpec
from engines.logprob_prompts import PromptEncoder, reply_of, rubric_version
from engines.logprob_signals import Reading, attributes
from engines.types import ChatEngine, Message, RewardResult, Usage, aggregate_reward


def loaded_embedded_chat(spec: ModelSpec):
    """An open transformers chat engine already serving the embedded model on this device and
    dtype (so the default judge does not load SmolLM2 a second time), or None."""
    from engines.registry import open_engines
    from engines.transformers_chat import TransformersChatEngine

    for engine in open_engines().values():
        if (isinstance(engine, TransformersChatEngine) and not engine.spec.model
                and engine.spec.device == spec.device and engine.spec.dtype == spec.dtype):
            return engine
    return None


class LocalReader:
    """Readings on a transformers chat engine's model, batched by length (logprob_transformers)."""

    def __init__(self, chat, batch_size: int):
        self.chat, self.batch_size = chat, batch_size
        self.lane = chat._lane  # the chat engine's torch thread: one model, one thread
        self._encoder: PromptEncoder | None = None
        self._lock = threading.Lock()

    def encoder(self) -> PromptEncoder:
        model, tokenizer = self.chat.load()
        if self._encoder is None or self._encoder.tokenizer is not tokenizer:
            self._encoder = PromptEncoder(tokenizer)
        return self._encoder

    def read(self, conversations: list[list[Message]]) -> tuple[list[Reading | str], int]:
        """A reading or an error per conversation, and the tokens fed; runs on the torch thread."""
        from engines.logprob_transformers import read_chunk

        with self._lock:
            model, tokenizer = self.chat.load()
            encoder = self.encoder()
            out: list[Reading | str] = [""] * len(conversations)
            encoded = {}
            for i, conversation in enumerate(conversations):
                try:
                    encoded[i] = encoder.encode(conversation)
                except Exception as exc:  # noqa: BLE001 - one bad conversation, not the batch
                    out[i] = f"cannot build the judge prompt: {exc}"
            limit = getattr(model.config, "max_position_embeddings", None)
            for i, e in list(encoded.items()):
                longest = len(e.prefix_ids) + max(map(len, e.suffix_ids.values()))
                if limit and longest > limit:
                    out[i] = f"conversation + rubric ({longest} tokens) exceed the judge's {limit}"
                    del encoded[i]
            order = sorted(encoded, key=lambda i: len(encoded[i].prefix_ids))
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                try:
                    readings = read_chunk(model, pad, encoder.digits, [encoded[i] for i in chunk])
                except Exception as exc:  # noqa: BLE001 - recorded on each conversation of the chunk
                    readings = [f"transformers logprob pass failed: {type(exc).__name__}: {exc}"] * len(chunk)
                for i, reading in zip(chunk, readings):
                    out[i] = reading
            fed = sum(len(e.prefix_ids) + len(e.uncond_ids) + sum(map(len, e.suffix_ids.values()))
                      for e in encoded.values())
            return out, fed

    async def aread(self, conversations: list[list[Message]]) -> tuple[list[Reading | str], int]:
        return await torch_thread.arun(self.read, conversations, lane=self.lane)


class LogprobJudgeRewardEngine:
    backend = "logprob"

    def __init__(self, name: str, spec: ModelSpec, chat_engine: ChatEngine | None = None) -> None:
        """`chat_engine`: the judge (registry name in `spec.judge`); None means the embedded model."""
        from engines.transformers_chat import EMBEDDED_MODEL_NAME, TransformersChatEngine

        self.name, self.spec = name, spec
        self.usage = Usage()
        self.template_version = rubric_version()  # for lineage
        self._owns_chat = False
        if chat_engine is None:
            chat_engine = loaded_embedded_chat(spec)
        if chat_engine is None:
            self._owns_chat = True
            chat_engine = TransformersChatEngine(
                f"{name}:judge", ModelSpec(kind="chat", backend="transformers", model=spec.model,
                                           device=spec.device, dtype=spec.dtype, batch_size=spec.batch_size))
        self.chat_engine = chat_engine
        self.model_name = spec.model or f"logprob:{getattr(chat_engine, 'model_name', EMBEDDED_MODEL_NAME)}"
        if isinstance(chat_engine, TransformersChatEngine):
            self.reader = LocalReader(chat_engine, spec.batch_size)
        else:
            from engines.logprob_remote import remote_reader

            self.reader = remote_reader(chat_engine, spec.batch_size)

    async def score(self, conversations: Sequence[list[Message]]) -> list[RewardResult]:
        started = time.perf_counter()
        readings, fed = await self.reader.aread(list(conversations))
        results = [self._result(c, r) for c, r in zip(conversations, readings, strict=True)]
        self.usage.add(Usage(requests=len(results), prompt_tokens=fed, errors=sum(not r.ok for r in results),
                             seconds=time.perf_counter() - started))
        return results

    def _result(self, conversation: list[Message], reading: Reading | str) -> RewardResult:
        if isinstance(reading, str):
            return RewardResult(error=reading)
        grades = attributes(reading, reply_of(conversation))
        return RewardResult(attributes=grades, reward=aggregate_reward(grades, self.spec.reward_weights))

    async def aclose(self) -> None:
        """A judge from the registry is the registry's to close; a private one is closed here."""
        if self._owns_chat:
            await self.chat_engine.aclose()
