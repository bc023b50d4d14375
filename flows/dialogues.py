"""The dialogues stage: published prompts -> multi-turn dialogues by role play, every assistant turn scored.

Per batch of prompts, one task plays every round (tasks/dialogues/roleplay.py): the assistant
answers, the reward engine scores the new turn in context, a simulated user with a persona asks
the next thing. Kept dialogues land as `dialogues` (source `role_play`) through the gate; every
dropped one is in the ledger with its reason. Rounds of a dialogue are sequential, so batches run
side by side to keep the model servers' windows full.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.batches import chunks
from flows.config import RunConfig
from flows.reports import artifact_key, batches_table
from flows.run_context import RunContext
from flows.stage import StageRun, open_stage, record_drops
from tasks.dialogues.personas import Persona, load_personas
from tasks.dialogues.roleplay import role_play
from tasks.llm_step import Row, StepResult
from tasks.preferences.select import select_prompts
from tasks.target import TargetTracker

STAGE = "dialogues"
DATASETS = ("dialogues",)


class NoPrompts(ValueError):
    pass


@task(name="role-play", task_run_name="role-play-{shard}", cache_policy=NO_CACHE)
async def play_batch(run: RunContext, prompts: list[Row], personas: list[Persona], shard: str
                     ) -> tuple[StepResult, dict[str, int]]:
    stage = run.config.dialogues
    out, retried = await role_play(run.chat_engine, run.reward_engine(stage.reward), prompts, personas, stage,
                                   run.config.seed)
    record_drops(run, f"role-play-{shard}", out)
    return out, retried


async def run_batch(stage_run: StageRun, prompts: list[Row], personas: list[Persona], shard: str,
                    playing: asyncio.Semaphore, target: TargetTracker) -> tuple[StepResult, dict[str, int]] | None:
    """One batch of dialogues, or None when the target or a budget ended the stage before it started."""
    if (done := stage_run.finished(shard, target)) is not None:  # an earlier attempt of this run landed it
        return done
    async with playing:  # the landing does not hold a slot: the next batch plays while this one is gated
        if not await target.start_batch():
            return None
        out, retried = await stage_run.call(play_batch, quote(stage_run.run), quote(prompts), quote(personas), shard)
    outcomes = await stage_run.land("dialogues", out.rows, shard, target)
    stage_run.mark_finished(shard, (out, retried), outcomes)
    get_run_logger().info("dialogues %s: %d kept, %d dropped %s", shard, len(out.rows), len(out.drops),
                          dict(Counter(d.reason for d in out.drops).most_common(3)))
    return out, retried


@flow(name="dialogues", log_prints=True)
async def dialogues_flow(config: RunConfig, run_date: str | None = None, prompt_batches: list[str] | None = None
                     ) -> dict:
    """Make the role-played `dialogues` of one night from published prompts."""
    stage = config.dialogues
    personas = load_personas(stage.personas)  # a bad persona file fails here, before any model is called
    async with open_stage(config, STAGE, run_date, DATASETS, stage.batch_size) as stage_run:
        run = stage_run.run
        prompts = select_prompts(run.catalog, stage.prompts, prompt_batches)
        if not prompts:
            raise NoPrompts(f"dialogues.prompts selects no published prompt ({stage.prompts.model_dump()}): "
                            "run the prompts stage first, or widen run_dates, task_types or sources")
        playing = asyncio.Semaphore(stage.batches_in_flight)
        planned = list(chunks(prompts, stage.batch_size))
        await stage_run.plan(len(planned))
        target = stage_run.target(stage.target, "dialogues")
        played = await asyncio.gather(*(run_batch(stage_run, list(b), personas, f"{i:05d}", playing, target)
                                        for i, b in enumerate(planned)))
        batches = [b for b in played if b is not None]
        summary = await _report(stage_run, prompts, batches)
        summary["ended_by"] = target.end()
        if stage.target.rows and summary["dialogues"] < stage.target.rows:
            get_run_logger().warning("dialogues: %d published of the %d targeted; ended by %s",
                                     summary["dialogues"], stage.target.rows, summary["ended_by"])
    print(f"dialogues: {summary['prompts']} prompts, {summary['dialogues']} dialogues published, "
          f"drops {summary['drops']}")
    return summary


async def _report(stage_run: StageRun, prompts: list[Row], batches: list[tuple[StepResult, dict[str, int]]]) -> dict:
    run = stage_run.run
    drops: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    turns: Counter[int] = Counter()
    for out, spent in batches:
        drops.update(d.reason for d in out.drops)
        retried.update(spent)
        turns.update(sum(m["role"] == "user" for m in r["messages"]) for r in out.rows)
    published = sum(o["rows_out"] for o in stage_run.lander.outcomes)
    lines = [f"# Dialogues of {run.run_id}", "",
             f"- prompts: {len(prompts)}; dialogues played to the end: {sum(turns.values())}; "
             f"published through the gate: {published}",
             f"- user turns per dialogue: {dict(sorted(turns.items()))}",
             f"- extra attempts: {dict(retried)}", "", "| drop reason | dialogues |", "| --- | --- |"]
    lines += [f"| {reason} | {count} |" for reason, count in drops.most_common()]
    await acreate_table_artifact(batches_table(STAGE, stage_run.lander.outcomes),
                                 key=artifact_key(run.config.name, "dialogues-batches"))
    await acreate_markdown_artifact("\n".join(lines), key=artifact_key(run.config.name, "dialogues-report"),
                                    description=f"Dialogues of {run.run_id}")
    return {"run_id": run.run_id, "prompts": len(prompts), "dialogues": published, "played": sum(turns.values()),
            "resumed_batches": stage_run.resumed,
            "user_turns": dict(turns), "drops": dict(drops), "retried": dict(retried),
            "batches": stage_run.lander.outcomes}
