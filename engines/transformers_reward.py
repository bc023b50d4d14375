"""Local reward scoring with a `transformers` sequence-classification model.

The Nemotron reward design: a regression head read at the last token of the conversation.
Llama-style heads already pool at the last non-pad token, so each conversation's logits are
its scores. Five labels are the HelpSteer2 attributes (matched by id2label names when the model
names them, else taken in order), aggregated with the spec's weights; one label is a plain reward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from engines import torch_thread
from engines.config import ModelSpec
from engines.transformers_chat import resolve_device, resolve_dtype, resolve_model_source
from engines.types import HELPSTEER2_ATTRIBUTES, Message, RewardResult, Usage, aggregate_reward


def attribute_order(id2label: dict[int, str], num_labels: int) -> list[str] | None:
    """The HelpSteer2 attribute of each output column, or None for a single plain reward.

    >>> attribute_order({0: "verbosity", 1: "helpfulness", 2: "correctness", 3: "coherence", 4: "complexity"}, 5)
    ['verbosity', 'helpfulness', 'correctness', 'coherence', 'complexity']
    >>> attribute_order({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2", 3: "LABEL_3", 4: "LABEL_4"}, 5)[0]
    'helpfulness'
    """
    if num_labels == 1:
        return None
    if num_labels != len(HELPSTEER2_ATTRIBUTES):
        raise ValueError(
            f"a reward model needs 5 labels (the HelpSteer2 attributes) or 1 (a plain reward); this one has {num_labels}"
        )
    names = [str(id2label.get(i, "")).lower() for i in range(num_labels)]
    if sorted(names) == sorted(HELPSTEER2_ATTRIBUTES):
        return names
    return list(HELPSTEER2_ATTRIBUTES)


class TransformersRewardEngine:
    backend = "transformers"

    def __init__(self, name: str, spec: ModelSpec):
        if not spec.model:
            raise ValueError(
                f"reward model {name!r} (backend 'transformers') needs model: a sequence-classification folder or hub id"
            )
        self.name, self.spec = name, spec
        self.model_name = spec.model
        self.usage = Usage()
        self._model = self._tokenizer = self._columns = None
        self._lock = threading.Lock()
        self._lane = torch_thread.lane_for(spec.device)  # the thread its torch work runs on

    async def score(self, conversations: Sequence[list[Message]]) -> list[RewardResult]:
        started = time.perf_counter()
        results, prompt_tokens = await torch_thread.arun(self._score_all, list(conversations), lane=self._lane)
        self.usage.add(
            Usage(
                requests=len(results),
                prompt_tokens=prompt_tokens,
                errors=sum(not r.ok for r in results),
                seconds=time.perf_counter() - started,
            )
        )
        return results

    async def aclose(self) -> None:
        self._model = self._tokenizer = None

    def load(self):
        """Load the model and tokenizer once (the first score does it too), on the torch thread."""
        return torch_thread.run(self._load, lane=self._lane)

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            source = resolve_model_source(self.spec)
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForSequenceClassification.from_pretrained(source, dtype=resolve_dtype(self.spec.dtype))
            if model.config.pad_token_id is None:
                # The head finds the last real token through pad_token_id; without it batches break.
                model.config.pad_token_id = tokenizer.pad_token_id
                if model.config.pad_token_id is None:
                    raise ValueError(f"reward model {source!r} has no pad token; cannot score in batches")
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token_id = model.config.pad_token_id
            self._columns = attribute_order(model.config.id2label, model.config.num_labels)
            self._model = model.to(resolve_device(self.spec.device)).eval()
            self._tokenizer = tokenizer
        return self._model, self._tokenizer

    def _encode(self, tokenizer, conversation: list[Message]) -> list[int]:
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(conversation, tokenize=False)
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        # No template: plain "role: content" lines, so any classifier can still read the turns.
        text = "\n".join(f"{turn['role']}: {turn['content']}" for turn in conversation)
        return tokenizer(text)["input_ids"]

    def _score_all(self, conversations: list[list[Message]]) -> tuple[list[RewardResult], int]:
        with self._lock:
            model, tokenizer = self.load()
            encoded = [self._encode(tokenizer, c) for c in conversations]
            results = [RewardResult() for _ in conversations]
            order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
            size = self.spec.batch_size
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                try:
                    scores = self._forward(model, tokenizer, [encoded[i] for i in chunk])
                except Exception as exc:  # noqa: BLE001 - recorded on each conversation of the chunk
                    for i in chunk:
                        results[i].error = f"transformers reward failed: {type(exc).__name__}: {exc}"
                    continue
                for i, row in zip(chunk, scores):
                    results[i] = self._result(row)
            return results, sum(len(ids) for ids in encoded)

    def _forward(self, model, tokenizer, batch: list[list[int]]) -> list[list[float]]:
        import torch

        pad = model.config.pad_token_id
        width = max(len(ids) for ids in batch)
        # Right padding: the Llama head reads the token before the first pad.
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=model.device)
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=model.device)
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=attention).logits
        return logits.float().tolist()

    def _result(self, row: list[float]) -> RewardResult:
        if self._columns is None:
            return RewardResult(attributes={}, reward=float(row[0]))
        attributes = dict(zip(self._columns, map(float, row)))
        return RewardResult(attributes=attributes, reward=aggregate_reward(attributes, self.spec.reward_weights))
