"""The `logprob` judge's readings on vLLM (in-process `LLM`) and on OpenAI-compatible servers.

vLLM: the same token ids as the transformers reader (engines/logprob_prompts.py), one
`LLM.generate` for the whole batch: the reply likelihoods from `prompt_logprobs=0` (the log-prob
of each prompt token), the digits from `logprob_token_ids` (every spelling of 0..4, whatever its
rank, so the reading is the transformers one; `logprobs=20` on a vLLM without that field) of the
one token after each rubric question; vLLM's prefix cache shares the conversation between the
five questions.

OpenAI-compatible server (we hold no tokenizer for it): the digits from `/chat/completions` with
`max_tokens=1, logprobs=true, top_logprobs=20` on the conversation + rubric question; the reply
likelihoods from `/completions` with `echo=true, logprobs=1, max_tokens=1` over a plain
"User: ... / Assistant: ..." transcript (with and without the question), the reply's tokens
found by their `text_offset`. A server that leaves any of these out gets an error on every
result naming the server and the missing field.

Where only the top 20 are known (a server; an older vLLM), a digit outside them counts as
probability 0 (its true share is below the 20th token's); when none of 0..4 is among them the
reading is an error, not a guess.
"""

from __future__ import annotations

import asyncio
import json
import math

from engines.logprob_prompts import PromptEncoder, reply_of, rubric_question
from engines.logprob_signals import Reading
from engines.types import HELPSTEER2_ATTRIBUTES, Message

TOP_LOGPROBS = 20


def expected_digit(logprobs: dict[int | str, float], digits: dict[int | str, int]) -> float | None:
    """Expected digit from top logprobs {token: logprob}, renormalized over the digits present.

    >>> round(expected_digit({"3": math.log(0.3), "4": math.log(0.1), "x": math.log(0.6)}, {"3": 3, "4": 4}), 2)
    3.25
    """
    mass = [0.0] * 5
    for token, logprob in logprobs.items():
        if token in digits:
            mass[digits[token]] += math.exp(logprob)
    total = sum(mass)
    return sum(d * m for d, m in enumerate(mass)) / total if total > 0 else None


class VLLMReader:
    def __init__(self, chat, batch_size: int):
        self.chat = chat
        self.encoder = PromptEncoder(chat.llm.get_tokenizer())
        self.digits = {i: d for d, ids in enumerate(self.encoder.digits) for i in ids}

    async def aread(self, conversations):
        return await asyncio.to_thread(self.read, conversations)

    def read(self, conversations: list[list[Message]]):
        from vllm import SamplingParams

        likelihood = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        try:  # the digits' own log-probs, whatever their rank
            digit = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=sorted(self.digits))
        except TypeError:  # a vLLM without logprob_token_ids: the top 20 only
            digit = SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS)
        out, prompts, params, plan = [""] * len(conversations), [], [], []
        for i, conversation in enumerate(conversations):
            try:
                e = self.encoder.encode(conversation)
            except Exception as exc:  # noqa: BLE001 - one bad conversation, not the batch
                out[i] = f"cannot build the judge prompt: {exc}"
                continue
            plan.append((i, e, len(prompts)))
            prompts += [{"prompt_token_ids": e.prefix_ids}, {"prompt_token_ids": e.uncond_ids}]
            prompts += [{"prompt_token_ids": e.prefix_ids + e.suffix_ids[a]} for a in HELPSTEER2_ATTRIBUTES]
            params += [likelihood, likelihood] + [digit] * len(HELPSTEER2_ATTRIBUTES)
        with self.chat._lock:  # vllm.LLM is not thread-safe
            outputs = self.chat.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        name = self.chat.model_name
        for i, e, at in plan:
            cond, uncond = (_prompt_logprobs(outputs[at + k], e.reply_len) for k in (0, 1))
            rubric = {}
            for k, attribute in enumerate(HELPSTEER2_ATTRIBUTES):
                top = outputs[at + 2 + k].outputs[0].logprobs[0]
                rubric[attribute] = expected_digit({t: lp.logprob for t, lp in top.items()}, self.digits)
            missing = [a for a, v in rubric.items() if v is None]
            out[i] = (f"vllm {name}: none of the digits 0..4 among the top {TOP_LOGPROBS} for {missing}"
                      if missing else Reading(rubric=rubric, cond_logprobs=cond, uncond_logprobs=uncond))
        return out, sum(len(p["prompt_token_ids"]) for p in prompts)


def _prompt_logprobs(output, reply_len: int) -> list[float]:
    ids, per_position = output.prompt_token_ids, output.prompt_logprobs
    start = max(len(ids) - reply_len, 1)  # position 0 has no log-prob
    return [per_position[p][ids[p]].logprob for p in range(start, len(ids))]


def _by_spelling(top_logprobs: list[dict]) -> dict[str, float]:
    """{token stripped: logprob}, the spellings of one digit ('3', ' 3') summed in probability.

    >>> top = [{"token": "3", "logprob": math.log(0.2)}, {"token": " 3", "logprob": math.log(0.1)}]
    >>> round(math.exp(_by_spelling(top)["3"]), 6)
    0.3
    """
    mass: dict[str, float] = {}
    for entry in top_logprobs:
        token = str(entry["token"]).strip()
        mass[token] = mass.get(token, 0.0) + math.exp(entry["logprob"])
    return {token: math.log(p) if p > 0 else -math.inf for token, p in mass.items()}


def _plain(messages: list[Message]) -> str:
    return "".join(f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}\n" for m in messages)


class OpenAIReader:
    def __init__(self, chat, batch_size: int):
        self.chat, self.caller = chat, chat._caller
        self.where = f"{self.caller.base_url} model {self.caller.model!r}"

    async def aread(self, conversations):
        return await self.caller.loop.run(self._read_all(list(conversations)))

    async def _read_all(self, conversations):
        out = await asyncio.gather(*(self._read_one(c) for c in conversations), return_exceptions=True)
        results = [r if not isinstance(r, BaseException) else f"{self.where}: {type(r).__name__}: {r}" for r in out]
        return results, 0

    async def _read_one(self, conversation: list[Message]) -> Reading | str:
        reply = reply_of(conversation)
        digits = {str(d): d for d in range(5)}
        rubric = {}
        for attribute in HELPSTEER2_ATTRIBUTES:
            data = await self.caller.call({
                "model": self.caller.model, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
                "messages": [*conversation, {"role": "user", "content": rubric_question(attribute)}],
            })
            content = ((data["choices"][0].get("logprobs") or {}).get("content") or [None])[0]
            if not content or not content.get("top_logprobs"):
                return f"{self.where}: the answer has no logprobs.content[0].top_logprobs (server ignores logprobs)"
            value = expected_digit(_by_spelling(content["top_logprobs"]), digits)
            if value is None:
                return f"{self.where}: none of the digits 0..4 among the top {TOP_LOGPROBS} for {attribute}"
            rubric[attribute] = value
        cond = await self._echo(_plain(conversation[:-1]) + "Assistant: ", reply)
        uncond = await self._echo("User: \nAssistant: ", reply)
        if isinstance(cond, str) or isinstance(uncond, str):
            return cond if isinstance(cond, str) else uncond
        return Reading(rubric=rubric, cond_logprobs=cond, uncond_logprobs=uncond)

    async def _echo(self, head: str, reply: str) -> list[float] | str:
        import httpx2

        body = {"model": self.caller.model, "prompt": head + reply + "\n", "echo": True, "logprobs": 1,
                "max_tokens": 1, "temperature": 0.0}
        # One try, no window: the likelihood call rides on the rubric calls' retries above.
        async with asyncio.timeout(self.caller.timeout_s):
            response = await self.caller.client.post("/completions", cast_to=httpx2.Response, body=body)
        logprobs = (json.loads(response.content).get("choices") or [{}])[0].get("logprobs") or {}
        offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
        if not offsets or not values:
            return f"{self.where}: /completions with echo returned no logprobs.text_offset/token_logprobs"
        # The reply's tokens: those overlapping [start, end). A token may begin before the reply
        # (BPE puts the space of "Assistant: " on the reply's first word, " The"): it is the
        # reply's first token, not the head's. Tokens from `end` on are the generated one.
        start, end = len(head), len(head) + len(reply) + 1
        ends = [*offsets[1:], end]
        return [v for o, e, v in zip(offsets, ends, values) if e > start and o < end and v is not None]


def remote_reader(chat, batch_size: int):
    from engines.openai_chat import OpenAIChatEngine

    if isinstance(chat, OpenAIChatEngine):
        return OpenAIReader(chat, batch_size)
    if type(chat).__name__ == "VLLMChatEngine":  # no vllm import unless one is in use
        return VLLMReader(chat, batch_size)
    raise ValueError(f"the logprob judge needs a transformers, vllm or openai chat model, not {type(chat).__name__}")
