"""Verifiable instruction-following prompts: a base prompt plus IFEval-style instructions.

Three forms, as the Nemotron-4 report describes: single-turn, multi-turn (the rules hold for
every later turn) and second-turn ("revise your previous answer so that ..."), the last one
after a generated first answer. The instruction ids and kwargs travel on the row so the
preference stage can verify responses by code.
"""

from __future__ import annotations

import json
import random

from engines.types import ChatEngine
from tasks.llm_step import Row, StepResult
from tasks.prompts.common import row_id, stable_seed
from tasks.prompts.config import PromptsStage
from tasks.instructions import INSTRUCTIONS, sample_instruction_ids
from tasks.prompts.instruction_forms import render_form, template_lineage
from tasks.prompts.two_turn import answer_first_turn


def plan_instructions(base: list[Row], stage: PromptsStage, seed: int, offset: int = 0) -> list[Row]:
    """Pick, reproducibly, the form, instruction ids and kwargs for each of `count` base prompts.

    `offset` is how many base prompts earlier shares of the stage took: forms keep rotating and
    the total stays within `count` when the stage plans its bases in parts.
    """
    settings = stage.instruction_following
    plans = []
    for i, row in enumerate(base[: max(0, settings.count - offset)], start=offset):
        rng = random.Random(stable_seed(seed, "instructions", row["id"]))
        prompt = row["messages"][-1]["content"]
        ids = sample_instruction_ids(rng, rng.randint(1, settings.max_per_prompt), settings.instruction_ids)
        kwargs = [INSTRUCTIONS[iid].make_kwargs(rng, prompt) for iid in ids]
        plans.append({"row": row, "form": settings.forms[i % len(settings.forms)], "ids": ids, "kwargs": kwargs})
    return plans


def render_plan(plan: Row, first_answer: str | None = None) -> Row:
    row, form = plan["row"], plan["form"]
    prompt = row["messages"][-1]["content"]
    messages = render_form(form, prompt, plan["ids"], plan["kwargs"], first_answer=first_answer)
    lineage = template_lineage(form)
    return {
        **row,
        "id": row_id("instruction_following", form, json.dumps(messages)),
        "task_type": "instruction_following",
        "messages": messages,
        "instruction_ids": list(plan["ids"]),
        "instruction_kwargs": json.dumps(plan["kwargs"], sort_keys=True),
        "turn_form": form,
        "template_id": lineage["template_id"],
        "template_version": lineage["template_version"],
    }


async def generate_instruction_prompts(
    engine: ChatEngine, base: list[Row], stage: PromptsStage, seed: int, offset: int = 0
) -> StepResult:
    """Single- and multi-turn forms are rendered directly; second-turn forms need a first answer."""
    plans = plan_instructions(base, stage, seed, offset)
    out = StepResult(rows=[render_plan(p) for p in plans if p["form"] != "second_turn"])
    second = [p for p in plans if p["form"] == "second_turn"]
    if second:
        answered = await answer_first_turn(engine, [p["row"] for p in second], stage, seed)
        out.drops += answered.drops
        by_id = {p["row"]["id"]: p for p in second}
        for row in answered.rows:
            plan = {**by_id[row["id"]], "row": {**row, "messages": row["messages"][:1]}}
            rendered = render_plan(plan, first_answer=row["messages"][1]["content"])
            out.rows.append({**rendered, **{k: row[k] for k in ("model", "backend", "sampling", "seed")}})
    return out
