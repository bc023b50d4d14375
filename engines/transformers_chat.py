"""Local chat generation with `transformers`: batched, left-padded, on CPU or CUDA.

Seeds: every sampled row draws its randomness from its own `torch.Generator`, seeded from the
request's seed and the sample index, through the Gumbel-max trick (argmax of logits/T plus Gumbel
noise is an exact sample of softmax(logits/T)). So a seeded request gives the same text whatever
other requests share its batch (up to float rounding of padded batches), while every row,
greedy or sampled, with any temperature, top_p or seed, still runs in one batched `generate`.
Unseeded requests get a fresh random seed. `json_schema` is not supported here: a ValueError.
Usage counts the prompt once per request and the tokens of every completion returned.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engines import torch_thread
from engines.config import ModelSpec
from engines.types import ChatRequest, ChatResult, Completion, Usage

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct (embedded)"


def resolve_model_source(spec: ModelSpec) -> str:
    """A local folder or hub id; no model named means the embedded default."""
    if spec.model:
        return spec.model
    from engines.embedded import embedded_model_dir

    return str(embedded_model_dir())


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return device


def resolve_dtype(dtype: str):
    import torch

    return "auto" if dtype == "auto" else getattr(torch, dtype)


def row_seed(seed: int, sample_index: int) -> int:
    """A stable 63-bit seed per (request seed, sample): sample k of seed s is always the same stream."""
    digest = hashlib.blake2b(f"{seed}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class _Row:
    """One sequence to generate: sample `sample_index` of request `request_index`."""

    request_index: int
    sample_index: int
    prompt_ids: list[int]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    stops: list[str]


class _SeededSampler:
    """A logits processor that turns greedy `generate` into per-row seeded sampling."""

    def __init__(self, rows: Sequence[_Row], device):
        import torch

        self.sampled = [i for i, row in enumerate(rows) if row.temperature > 0]
        self.temperature = torch.tensor([rows[i].temperature for i in self.sampled], device=device)
        self.top_p = torch.tensor([rows[i].top_p for i in self.sampled], device=device)
        self.generators = [torch.Generator(device=device).manual_seed(rows[i].seed) for i in self.sampled]

    def __call__(self, input_ids, scores):
        import torch

        if not self.sampled:
            return scores  # all greedy: argmax as is
        index = torch.tensor(self.sampled, device=scores.device)
        logits = scores[index] / self.temperature[:, None]
        if bool((self.top_p < 1.0).any()):
            ordered, order = logits.sort(dim=-1, descending=True)
            probs = ordered.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs  # the top token always survives
            ordered = ordered.masked_fill(mass_before > self.top_p[:, None], float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
        uniform = torch.stack(
            [torch.rand(logits.shape[-1], generator=g, device=scores.device) for g in self.generators]
        )
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
        scores = scores.clone()
        scores[index] = logits + gumbel
        return scores


class _RowEndTracker:
    """A stopping criterion that records where and why each row ended (EOS, stop string, length).

    `generate` pads finished rows afterwards (and pad may equal EOS), so the end is noted the
    step it happens rather than guessed from the output.
    """

    def __init__(self, rows: Sequence[_Row], prompt_width: int, eos_ids: set[int], tokenizer, eos_ends: bool):
        self.rows, self.prompt_width, self.eos_ids = rows, prompt_width, eos_ids
        self.tokenizer, self.eos_ends = tokenizer, eos_ends
        self.ended_at: list[int | None] = [None] * len(rows)
        self.reason: list[str] = ["length"] * len(rows)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids.shape[1] - self.prompt_width
        last_tokens = input_ids[:, -1].tolist()
        for i, row in enumerate(self.rows):
            if self.ended_at[i] is not None:
                continue
            if self.eos_ends and last_tokens[i] in self.eos_ids:
                self.ended_at[i], self.reason[i] = generated, "stop"
            elif row.stops and self._tail_has_stop(input_ids[i], row.stops):
                self.ended_at[i], self.reason[i] = generated, "stop"
            elif generated >= row.max_tokens:
                self.ended_at[i] = generated
        done = [end is not None for end in self.ended_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _tail_has_stop(self, ids, stops: list[str]) -> bool:
        # A token holds at least one byte, so this many tokens cover any stop ending now.
        window = max(len(s.encode()) for s in stops) + 1
        tail = ids[max(self.prompt_width, ids.shape[0] - window) :]
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        return any(s in text for s in stops)


class TransformersChatEngine:
    backend = "transformers"

    def __init__(self, name: str, spec: ModelSpec, *, ignore_eos: bool = False):
        """`ignore_eos` makes every row run to max_tokens (benchmarks comparing token counts)."""
        self.name, self.spec, self.ignore_eos = name, spec, ignore_eos
        self.model_name = spec.model or EMBEDDED_MODEL_NAME
        self.usage = Usage()
        self._model = self._tokenizer = None
        self._lock = threading.Lock()  # one generate at a time; the model is not re-entrant
        self._lane = torch_thread.lane_for(spec.device)  # the thread its torch work runs on

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        for request in requests:
            if request.json_schema is not None:
                raise ValueError(
                    "the 'transformers' backend does not support json_schema (structured output); "
                    "use the 'vllm' or 'openai' backend for it"
                )
        started = time.perf_counter()
        results = await torch_thread.arun(self._generate_all, list(requests), lane=self._lane)
        self.usage.add(
            Usage(
                requests=len(results),
                prompt_tokens=sum(r.prompt_tokens for r in results),
                completion_tokens=sum(r.completion_tokens for r in results),
                errors=sum(not r.ok for r in results),
                seconds=time.perf_counter() - started,
            )
        )
        return results

    async def aclose(self) -> None:
        self._model = self._tokenizer = None

    def load(self):
        """Load the model and tokenizer once (the first chat does it too), on the torch thread."""
        return torch_thread.run(self._load, lane=self._lane)

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            source = resolve_model_source(self.spec)
            device = resolve_device(self.spec.device)
            tokenizer = AutoTokenizer.from_pretrained(source)
            if not tokenizer.chat_template:
                raise ValueError(f"model {source!r} has no chat template; the transformers backend needs one")
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(self.spec.dtype))
            self._model, self._tokenizer = model.to(device).eval(), tokenizer
        return self._model, self._tokenizer

    def _rows(self, requests: list[ChatRequest], results: list[ChatResult], tokenizer) -> list[_Row]:
        defaults = self.spec.sampling
        limit = getattr(self._model.config, "max_position_embeddings", None)
        rows = []
        for index, request in enumerate(requests):
            text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
            prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            temperature = defaults.temperature if request.temperature is None else request.temperature
            max_tokens = request.max_tokens or defaults.max_tokens
            results[index].prompt_tokens = len(prompt_ids)
            if limit and len(prompt_ids) + max_tokens > limit:
                results[index].error = f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceed the model's {limit}"
                continue
            seed = request.seed if request.seed is not None else defaults.seed
            seed = random.SystemRandom().getrandbits(62) if seed is None else seed
            # Greedy samples are all the same: generate one and copy it.
            samples = request.n if temperature > 0 else 1
            for sample in range(samples):
                rows.append(
                    _Row(index, sample, prompt_ids, temperature,
                         defaults.top_p if request.top_p is None else request.top_p,
                         max_tokens, row_seed(seed, sample), list(request.stop or [])),
                )
        return rows

    def _generate_all(self, requests: list[ChatRequest]) -> list[ChatResult]:
        with self._lock:
            model, tokenizer = self.load()
            results = [ChatResult() for _ in requests]
            rows = self._rows(requests, results, tokenizer)
            # Similar lengths share a batch, so little compute goes to padding.
            rows.sort(key=lambda row: (row.max_tokens, len(row.prompt_ids)))
            texts: dict[tuple[int, int], Completion] = {}
            counts: dict[tuple[int, int], int] = {}
            size = self.spec.batch_size
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                try:
                    for row, completion, count in zip(chunk, *self._generate_chunk(model, tokenizer, chunk)):
                        texts[row.request_index, row.sample_index] = completion
                        counts[row.request_index, row.sample_index] = count
                except Exception as exc:  # noqa: BLE001 - recorded on each request of the chunk
                    for row in chunk:
                        results[row.request_index].error = f"transformers generate failed: {type(exc).__name__}: {exc}"
            for index, (request, result) in enumerate(zip(requests, results)):
                if result.error is not None:
                    result.completions = []
                    continue
                for sample in range(request.n):
                    key = (index, sample) if (index, sample) in texts else (index, 0)  # greedy copies
                    result.completions.append(texts[key])
                    result.completion_tokens += counts[key]
            return results

    def _generate_chunk(self, model, tokenizer, chunk: list[_Row]):
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        width = max(len(row.prompt_ids) for row in chunk)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in chunk])
        attention = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in chunk])
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        eos_ids.discard(None)
        longest = max(row.max_tokens for row in chunk)
        tracker = _RowEndTracker(chunk, width, eos_ids, tokenizer, eos_ends=not self.ignore_eos)
        config = GenerationConfig(
            do_sample=False,  # the sampler draws per row; generate only takes the argmax
            max_new_tokens=longest,
            min_new_tokens=longest if self.ignore_eos else None,
            pad_token_id=pad,
            eos_token_id=sorted(eos_ids),
        )
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([_SeededSampler(chunk, model.device)]),
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        completions, counts = [], []
        for i, row in enumerate(chunk):
            used = tracker.ended_at[i] or min(output.shape[1] - width, row.max_tokens)
            text = tokenizer.decode(output[i, width : width + used], skip_special_tokens=True)
            reason = tracker.reason[i]
            cut = min((text.find(s) for s in row.stops if s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
            completions.append(Completion(text=text, finish_reason=reason))
            counts.append(used)
        return completions, counts
