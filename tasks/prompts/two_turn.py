"""Two-turn prompts (User / Assistant / User): a seed first turn, a generated answer, a generated follow-up."""

from __future__ import annotations

from engines.types import ChatEngine, ChatRequest
from tasks.llm_step import Drop, Row, StepResult, run_llm_step
from tasks.prompts.common import row_id, stable_seed, template, user_text
from tasks.prompts.config import PromptsStage


async def answer_first_turn(engine: ChatEngine, rows: list[Row], stage: PromptsStage, seed: int) -> StepResult:
    """Append the generator's answer to each single-turn prompt."""

    def parse(row: Row, text: str) -> list[Row] | Drop:
        answer = text.strip()
        if not answer:
            return Drop("empty_answer", text)
        return [{**row, "messages": [*row["messages"], {"role": "assistant", "content": answer}]}]

    return await run_llm_step(
        engine,
        rows,
        lambda row: ChatRequest(
            messages=row["messages"], temperature=stage.temperature, max_tokens=stage.max_tokens,
            seed=stable_seed(seed, "answer", row["id"]),
        ),
        parse,
    )


async def add_follow_up(engine: ChatEngine, answered: list[Row], stage: PromptsStage, seed: int) -> StepResult:
    """Ask the generator, playing the user, for the next user turn of each answered prompt."""
    tpl = template("two_turn_followup")

    def parse(row: Row, text: str) -> list[Row] | Drop:
        follow_up = user_text(text, tpl)
        if isinstance(follow_up, Drop):
            follow_up.reason = f"follow_up_{follow_up.reason}"
            return follow_up
        messages = [*row["messages"], {"role": "user", "content": follow_up}]
        return [{**row, "id": row_id("two_turn", row["id"], follow_up), "task_type": "two_turn",
                 "source": "synthetic", "messages": messages}]

    return await run_llm_step(
        engine,
        answered,
        lambda row: ChatRequest(
            messages=[{"role": "user", "content": tpl.render(
                first_turn=row["messages"][0]["content"], answer=row["messages"][1]["content"])}],
            temperature=stage.temperature, max_tokens=stage.max_tokens,
            seed=stable_seed(seed, "follow_up", row["id"]),
        ),
        parse,
        tpl,
    )


async def generate_two_turn(engine: ChatEngine, seed_rows: list[Row], stage: PromptsStage, seed: int) -> StepResult:
    out = StepResult()
    answered = await answer_first_turn(engine, seed_rows[: stage.two_turn.count], stage, seed)
    out.drops += answered.drops
    out.extend(await add_follow_up(engine, answered.rows, stage, seed))
    return out
