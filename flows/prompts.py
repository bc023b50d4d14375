"""The prompts stage: topic tree -> questions per task type -> instruction-following and two-turn
prompts -> seeds, every row landed through the gate as the `topics` and `prompts` datasets."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.batches import chunks
from flows.config import RunConfig
from flows.reports import artifact_key, batches_table
from flows.run_context import RunContext
from flows.stage import StageRun, open_stage, record_drops
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


@task(name="questions", task_run_name="questions-{shard}", cache_policy=NO_CACHE)
async def make_questions(run: RunContext, task_type: str, items: list[Row], shard: str) -> list[Row]:
    stage = run.config.prompts
    engine = run.chat_engine(stage.generator)
    out = await generate_questions(engine, task_type, items, stage, run.config.seed)
    record_drops(run, shard, out)
    settings = getattr(stage, task_type, None)
    if TEMPLATES[task_type][1] and getattr(settings, "revise", False) and out.rows:
        revised = await revise_questions(engine, task_type, out.rows, stage, run.config.seed)
        record_drops(run, f"{shard}-revise", revised)
        return revised.rows
    return out.rows


@task(name="instruction-following", task_run_name="{shard}", cache_policy=NO_CACHE)
async def make_instruction_prompts(run: RunContext, base: list[Row], offset: int, shard: str) -> list[Row]:
    stage = run.config.prompts
    engine = run.chat_engine(stage.generator)
    out = await generate_instruction_prompts(engine, base, stage, run.config.seed, offset)
    record_drops(run, shard, out)
    return out.rows


@task(name="two-turn", task_run_name="{shard}", cache_policy=NO_CACHE)
async def make_two_turn(run: RunContext, seeds: list[Row], shard: str) -> list[Row]:
    stage = run.config.prompts
    out = await generate_two_turn(run.chat_engine(stage.generator), seeds, stage, run.config.seed)
    record_drops(run, shard, out)
    return out.rows


def mix_table(rows: list[Row]) -> list[dict]:
    counts = Counter((r["task_type"], r.get("topic") or "-") for r in rows)
    return [{"task_type": t, "topic": topic, "rows": n} for (t, topic), n in sorted(counts.items())]


def batches_of(items: list[Row], stage_batch_size: int, rows_per_item: int = 1) -> list[list[Row]]:
    """A part's inputs in batches that make about one gate batch of rows each."""
    return [list(b) for b in chunks(items, max(1, stage_batch_size // max(1, rows_per_item)))]


class Parts:
    """The stage's batches of work: each one generated (on the flow's loop or a Dask worker, through
    `StageRun.call`), landed as soon as it exists while the rest go on, then marked finished; a rerun
    of the same run takes a marked batch's rows from its marker instead of generating them again."""

    def __init__(self, stage_run: StageRun) -> None:
        self.stage_run = stage_run
        self.landings: list[asyncio.Task] = []

    async def batch(self, dataset: str, shard: str, making: Callable[[], Awaitable[list[Row]]]) -> list[Row]:
        if (done := self.stage_run.finished(shard)) is not None:
            return done
        rows = await making()
        self.land(dataset, shard, rows, rows)
        return rows  # the parts that build on these rows start now, not after the gate

    def land(self, dataset: str, shard: str, rows: list[Row], result: object) -> None:
        """Land in the background, then mark the batch finished with `result` (what a rerun takes instead)."""
        async def land() -> None:
            outcomes = await self.stage_run.land(dataset, rows, shard)
            self.stage_run.mark_finished(shard, result, outcomes)

        self.landings.append(asyncio.create_task(land()))

    async def part(self, name: str, batches: list[list[Row]], batch_task, *args) -> list[Row]:
        """Every batch of one part side by side (the engine's window takes their requests together)."""
        run = quote(self.stage_run.run)
        made = await asyncio.gather(*(
            self.batch("prompts", shard, lambda b=b, shard=shard: self.stage_run.call(batch_task, run, *args, quote(b), shard))
            for i, b in enumerate(batches) for shard in [f"{name}-{i:05d}"]))
        return [row for rows in made for row in rows]

    async def settle(self) -> None:
        await asyncio.gather(*self.landings)


async def generate_all(stage_run: StageRun, seeds: list[Row], documents: list[Row]) -> list[Row]:
    """Every part starts as soon as what it needs exists, and lands as soon as it is done.

    Rows and the run context reach tasks `quote`d: Prefect would otherwise walk every row of a
    parameter looking for futures (a third of the stage's CPU at 10,000 rows)."""
    run = stage_run.run
    stage = run.config.prompts
    parts = Parts(stage_run)
    size = stage.batch_size

    if (topics := stage_run.finished("topics")) is None:
        topics = await make_topics(quote(run))  # first and alone: every question waits for the tree
        parts.land("topics", "topics", [] if topics.reused else topics.rows, topics)
    if stage_run.finished("seed") is None:
        parts.land("prompts", "seed", seeds, seeds)
    leaves = leaf_topics(topics.rows)
    question_batches = {t: batches_of(question_items(t, leaves, stage), size, getattr(stage, t).per_topic)
                        for t in QUESTION_TYPES if getattr(stage, t).enabled}
    if documents:
        question_batches["closed_qa"] = batches_of(document_items(documents, stage.closed_qa.per_document), size,
                                                   stage.closed_qa.per_document)
    two_turn_batches = batches_of(seeds[: stage.two_turn.count], size)
    planned = 2 + sum(map(len, question_batches.values())) + len(two_turn_batches)  # with the topics and seeds
    await stage_run.plan(planned + len(batches_of([None] * stage.instruction_following.count, size)))

    questions = {t: asyncio.create_task(parts.part(t, b, make_questions, t)) for t, b in question_batches.items()}
    # queued after the questions: revisions and instruction prompts wait on those, nothing waits on this
    two_turn = asyncio.create_task(parts.part("two_turn", two_turn_batches, make_two_turn))

    # instruction-following prompts take open QA, then writing, then seed prompts as bases, up to
    # `count`; each share starts as soon as its base is ready (and the shares before it are sized)
    instructions, used = [], 0
    for source, base in [("open_qa", questions.get("open_qa")), ("writing", questions.get("writing")), ("seed", seeds)]:
        base = await base if isinstance(base, asyncio.Task) else base or []
        share = base[: max(0, stage.instruction_following.count - used)]
        for i, chunk in enumerate(batches_of(share, size)):
            shard = f"instruction_following-{source}-{i:05d}"
            offset = used + i * max(1, size)
            made = (lambda chunk=chunk, offset=offset, shard=shard:
                    stage_run.call(make_instruction_prompts, quote(run), quote(chunk), offset, shard))
            instructions.append(asyncio.create_task(parts.batch("prompts", shard, made)))
        used += len(share)
    await stage_run.plan(planned + len(instructions))  # now that the shares are sized
    made = await asyncio.gather(*questions.values(), *instructions, two_turn)
    await parts.settle()
    return [row for rows in made for row in rows] + seeds


@flow(name="prompts", log_prints=True)
async def prompts_flow(config: RunConfig, run_date: str | None = None) -> dict:
    """Make the `topics` and `prompts` datasets of one night, every batch through its gate."""
    async with open_stage(config, STAGE, run_date, ("topics", "prompts"), config.prompts.batch_size) as stage_run:
        run = stage_run.run
        seeds, documents = check_inputs(run)
        stage_run.record_drops("seeds", seeds)
        stage_run.record_drops("documents", documents)
        rows = await generate_all(stage_run, seeds.rows, documents.rows)
        mix = mix_table(rows)
        await _report(run, mix, stage_run.lander.outcomes)
    outcomes = stage_run.lander.outcomes
    per_type = Counter(r["task_type"] for r in rows)
    print(f"prompts: {len(rows)} rows generated {dict(per_type)}; batches: {[o.get('state') for o in outcomes]}")
    return {"run_id": run.run_id, "rows": len(rows), "per_task_type": dict(per_type),
            "resumed_batches": stage_run.resumed, "batches": outcomes}


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
