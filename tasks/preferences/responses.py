"""K responses per prompt from a pool of generator models, each scored by the reward engine.

Each response draws its model from the pool by the configured weights, with a seed derived from
the run seed, the prompt and the response's index, so a rerun asks the same model the same thing.
Multi-turn prompts are answered in context: the request carries every turn of the prompt.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from engines.types import HELPSTEER2_ATTRIBUTES, ChatEngine, ChatRequest, RewardEngine
from tasks.llm_step import Drop, Row, StepResult, sampling_of
from tasks.preferences.config import Generator, PreferencesStage
from tasks.prompts.common import row_id, stable_seed


def pick_generators(prompt_id: str, count: int, generators: Sequence[Generator], seed: int) -> list[Generator]:
    """The model of each of a prompt's `count` responses: a seeded weighted draw per response."""
    weights = [g.weight for g in generators]
    return [random.Random(stable_seed(seed, "generator", prompt_id, index)).choices(generators, weights)[0]
            for index in range(count)]


def response_request(prompt: Row, generator: Generator, index: int, seed: int) -> ChatRequest:
    return ChatRequest(messages=list(prompt["messages"]), temperature=generator.temperature, top_p=generator.top_p,
                       max_tokens=generator.max_tokens, seed=stable_seed(seed, "response", prompt["id"], index))


async def generate_responses(engine_for: Callable[[str], ChatEngine], prompts: Sequence[Row],
                             stage: PreferencesStage, seed: int) -> StepResult:
    """K responses per prompt, one engine call per generator model, the models side by side."""
    planned: dict[str, list[tuple[Row, int, ChatRequest]]] = defaultdict(list)
    for prompt in prompts:
        for index, generator in enumerate(pick_generators(prompt["id"], stage.responses_per_prompt,
                                                          stage.generators, seed)):
            planned[generator.model].append((prompt, index, response_request(prompt, generator, index, seed)))
    parts = await asyncio.gather(*(_answer(engine_for(model), items) for model, items in planned.items()))
    out = StepResult()
    for part in parts:
        out.extend(part)
    out.rows.sort(key=lambda r: (r["prompt_id"], r["response_index"]))
    return out


async def _answer(engine: ChatEngine, items: list[tuple[Row, int, ChatRequest]]) -> StepResult:
    results = await engine.chat([request for _, _, request in items])
    out = StepResult()
    for (prompt, index, request), result in zip(items, results, strict=True):
        source = {"prompt_id": prompt["id"], "response_index": index, "model": engine.model_name}
        if not result.ok:
            out.drops.append(Drop(f"engine_error: {result.error}"[:200], None, source))
            continue
        completion = result.completions[0]
        if not completion.text.strip():
            reason = "empty_truncated_response" if completion.finish_reason == "length" else "empty_response"
            out.drops.append(Drop(reason, completion.text, source))
            continue
        out.rows.append({
            "id": row_id("response", prompt["id"], index, engine.model_name, request.seed),
            "prompt_id": prompt["id"], "task_type": prompt.get("task_type"), "prompt": list(prompt["messages"]),
            "response": [{"role": "assistant", "content": completion.text.strip()}], "response_index": index,
            "finish_reason": completion.finish_reason, "completion_tokens": result.completion_tokens,
            "reference_answer": prompt.get("reference_answer"), "instruction_ids": prompt.get("instruction_ids"),
            "instruction_kwargs": prompt.get("instruction_kwargs"),
            "model": engine.model_name, "backend": engine.backend, "sampling": sampling_of(request),
            "seed": request.seed,
        })
    return out


async def score_responses(engine: RewardEngine, responses: Sequence[Row]) -> StepResult:
    """Every response scored in one reward call: the five attributes and the aggregate, stored on the row.

    A failed or non-finite score is a drop with its reason (never a default score): the response
    cannot be ranked, so it leaves the `responses` dataset and every judge with it.
    """
    results = await engine.score([[*r["prompt"], *r["response"]] for r in responses]) if responses else []
    out = StepResult()
    for row, result in zip(responses, results, strict=True):
        source = {"id": row["id"], "prompt_id": row["prompt_id"], "model": row["model"]}
        if not result.ok:
            out.drops.append(Drop(f"reward_error: {result.error}"[:200], row["response"][0]["content"], source))
            continue
        values = [result.reward, *(result.attributes.get(a) for a in HELPSTEER2_ATTRIBUTES if a in result.attributes)]
        if result.reward is None or any(v is None or not math.isfinite(v) for v in values):
            out.drops.append(Drop("reward_not_finite", row["response"][0]["content"], source))
            continue
        attributes = {a: result.attributes.get(a) for a in HELPSTEER2_ATTRIBUTES} if result.attributes else None
        out.rows.append({**row, "attributes": attributes, "reward": float(result.reward),
                         "reward_model": engine.model_name})
    return out
