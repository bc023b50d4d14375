"""The prompts stage: topic tree -> questions per task type -> instruction-following and two-turn
prompts -> seeds, every row landed through the gate as the `topics` and `prompts` datasets."""

from __future__ import annotations

import asyncio
from collections import Counter

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.config import RunConfig
from flows.reports import artifact_key, batches_table
from flows.run_context import RunContext
from flows.stage import Lander, open_stage, record_drops
from tasks.llm_step import Row, StepResult
from tasks.prompts.common import TEMPLATE_DIR
from tasks.prompts.documents import read_documents
from tasks.prompts.instruction_following import generate_instruction_prompts
from tasks.prompts.questions import TEMPLATES, document_items, generate_questions, question_items, revise_questions
from tasks.prompts.seeds import read_seed_prompts
from tasks.prompts.topics import generate_topics, leaf_topics
from tasks.prompts.two_turn import generate_two_turn
from tasks.templates import load_template

STAGE = "prompts"
QUESTION_TYPES = ("open_qa", "writing", "math", "coding")


def check_inputs(run: RunContext) -> tuple[StepResult, StepResult]:
    """Everything that can be wrong with the inputs fails here, before any model is called."""
    for path in sorted(TEMPLATE_DIR.glob("*.txt")):
        load_template(path)
    stage = run.config.prompts
    seeds = read_seed_prompts(stage.seeds)
    documents = read_documents(stage.closed_qa.documents, stage.closed_qa.max_document_chars)
    return seeds, documents


@task(name="topic-tree", cache_policy=NO_CACHE)
async def make_topics(run: RunContext) -> StepResult:
    stage = run.config.prompts
    if stage.topics.reuse_published:
        table = run.catalog.query("SELECT id, topic, subtopic, source FROM topics WHERE run_date = (SELECT max(run_date) FROM topics)")
        if table.num_rows:
            return StepResult(rows=table.to_pylist(), reused=True)
    out = await generate_topics(run.chat_engine(stage.generator), stage, run.config.seed)
    record_drops(run, "topics", out)
    return out


@task(name="questions", task_run_name="questions-{task_type}", cache_policy=NO_CACHE)
async def make_questions(run: RunContext, task_type: str, items: list[Row]) -> list[Row]:
    stage = run.config.prompts
    engine = run.chat_engine(stage.generator)
    out = await generate_questions(engine, task_type, items, stage, run.config.seed)
    record_drops(run, task_type, out)
    settings = getattr(stage, task_type, None)
    if TEMPLATES[task_type][1] and getattr(settings, "revise", False) and out.rows:
        revised = await revise_questions(engine, task_type, out.rows, stage, run.config.seed)
        record_drops(run, f"{task_type}-revise", revised)
        return revised.rows
    return out.rows


@task(name="instruction-following", task_run_name="instruction-following-{source}", cache_policy=NO_CACHE)
async def make_instruction_prompts(run: RunContext, source: str, base: list[Row], offset: int) -> list[Row]:
    stage = run.config.prompts
    engine = run.chat_engine(stage.generator)
    out = await generate_instruction_prompts(engine, base, stage, run.config.seed, offset)
    record_drops(run, f"instruction_following-{source}", out)
    return out.rows


@task(name="two-turn", cache_policy=NO_CACHE)
async def make_two_turn(run: RunContext, seeds: list[Row]) -> list[Row]:
    stage = run.config.prompts
    out = await generate_two_turn(run.chat_engine(stage.generator), seeds, stage, run.config.seed)
    record_drops(run, "two_turn", out)
    return out.rows


def mix_table(rows: list[Row]) -> list[dict]:
    counts = Counter((r["task_type"], r.get("topic") or "-") for r in rows)
    return [{"task_type": t, "topic": topic, "rows": n} for (t, topic), n in sorted(counts.items())]


async def generate_all(run: RunContext, seeds: list[Row], documents: list[Row], lander: Lander) -> list[Row]:
    """Every part starts as soon as what it needs exists, and lands as soon as it is done.

    Rows and the run context reach tasks `quote`d: Prefect would otherwise walk every row of a
    parameter looking for futures (a third of the stage's CPU at 10,000 rows)."""
    stage = run.config.prompts
    landings: list[asyncio.Task] = []

    def land(dataset: str, rows: list[Row], shard: str) -> list[Row]:
        landings.append(asyncio.create_task(lander.land(dataset, rows, shard)))
        return rows

    async def part(shard: str, making) -> list[Row]:
        return land("prompts", await making, shard)

    topics = await make_topics(quote(run))  # first and alone: every question waits for the tree
    land("prompts", seeds, "seed")
    land("topics", [] if topics.reused else topics.rows, "topics")
    leaves = leaf_topics(topics.rows)
    questions = {t: asyncio.create_task(part(t, make_questions(quote(run), t, quote(question_items(t, leaves, stage)))))
                 for t in QUESTION_TYPES if getattr(stage, t).enabled}
    if documents:
        items = quote(document_items(documents, stage.closed_qa.per_document))
        questions["closed_qa"] = asyncio.create_task(part("closed_qa", make_questions(quote(run), "closed_qa", items)))
    # queued after the questions: revisions and instruction prompts wait on those, nothing waits on this
    two_turn = asyncio.create_task(part("two_turn", make_two_turn(quote(run), quote(seeds))))

    # instruction-following prompts take open QA, then writing, then seed prompts as bases, up to
    # `count`; each share starts as soon as its base is ready (and the shares before it are sized)
    instructions, used = [], 0
    for source, base in [("open_qa", questions.get("open_qa")), ("writing", questions.get("writing")), ("seed", seeds)]:
        base = await base if isinstance(base, asyncio.Task) else base or []
        share = base[: max(0, stage.instruction_following.count - used)]
        if share:
            made = make_instruction_prompts(quote(run), source, quote(share), used)
            instructions.append(asyncio.create_task(part(f"instruction_following-{source}", made)))
        used += len(share)
    parts = await asyncio.gather(*questions.values(), *instructions, two_turn)
    await asyncio.gather(*landings)
    return [row for rows in parts for row in rows] + seeds


@flow(name="prompts", log_prints=True)
async def prompts_flow(config: RunConfig, run_date: str | None = None) -> dict:
    """Make the `topics` and `prompts` datasets of one night, every batch through its gate."""
    async with open_stage(config, STAGE, run_date, ("topics", "prompts"), config.prompts.batch_size) as stage_run:
        run = stage_run.run
        seeds, documents = check_inputs(run)
        stage_run.record_drops("seeds", seeds)
        stage_run.record_drops("documents", documents)
        rows = await generate_all(run, seeds.rows, documents.rows, stage_run.lander)
        mix = mix_table(rows)
        await _report(run, mix, stage_run.lander.outcomes)
    outcomes = stage_run.lander.outcomes
    per_type = Counter(r["task_type"] for r in rows)
    print(f"prompts: {len(rows)} rows generated {dict(per_type)}; batches: {[o.get('state') for o in outcomes]}")
    return {"run_id": run.run_id, "rows": len(rows), "per_task_type": dict(per_type), "batches": outcomes}


async def _report(run: RunContext, mix: list[dict], outcomes: list[dict]) -> None:
    name = run.config.name
    await acreate_table_artifact(mix, key=artifact_key(name, "prompts-mix"), description=f"Prompt mix of {run.run_id}")
    per_type = Counter()
    for row in mix:
        per_type[row["task_type"]] += row["rows"]
    lines = [f"# Prompts of {run.run_id}", "", "| task type | rows |", "| --- | --- |"]
    lines += [f"| {t} | {n} |" for t, n in sorted(per_type.items())]
    lines += ["", f"Batches: {len(outcomes)}, published: {sum(o.get('state') == 'published' for o in outcomes)}"]
    await acreate_markdown_artifact("\n".join(lines), key=artifact_key(name, "prompts-summary"))
    await acreate_table_artifact(batches_table("prompts", outcomes), key=artifact_key(name, "prompts-batches"))
