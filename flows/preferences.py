"""The preferences stage: published prompts -> K scored responses -> judged pairs, and best-of-n SFT rows.

Per batch of prompts: responses from the generator pool, every one scored by the reward engine
and landed as `responses` (so judges can be re-run without generating again); the trusted judges
in the configured order make one (chosen, rejected) pair per prompt, landed as `preferences`; the
best correct response above the threshold lands in `dialogues` with source `best_of_n`. Batches
run side by side so the model servers' request windows stay full across a batch's phases.
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
from tasks.llm_step import Row, StepResult
from tasks.preferences.decide import Judged, best_of_n, group_by_prompt, judge_groups, preference_row
from tasks.preferences.report import judge_report, report_markdown
from tasks.preferences.responses import generate_responses, score_responses
from tasks.preferences.select import select_prompts
from tasks.preferences.trust import Trust, judge_trust
from tasks.target import TargetTracker

STAGE = "preferences"
DATASETS = ("responses", "preferences", "dialogues")


class NoPrompts(ValueError):
    pass


@task(name="responses", task_run_name="responses-{shard}", cache_policy=NO_CACHE)
async def make_responses(run: RunContext, prompts: list[Row], shard: str) -> StepResult:
    stage = run.config.preferences
    answered = await generate_responses(run.chat_engine, prompts, stage, run.config.seed)
    record_drops(run, f"responses-{shard}", answered)
    scored = await score_responses(run.reward_engine(stage.reward), answered.rows)
    record_drops(run, f"reward-{shard}", scored)
    return scored


@task(name="judges", task_run_name="judges-{shard}", cache_policy=NO_CACHE)
async def make_pairs(run: RunContext, responses: list[Row], trusted: list[str], shard: str) -> Judged:
    stage = run.config.preferences
    llm = run.chat_engine(stage.llm_judge_model()) if "llm_judge" in trusted else None
    judged = await judge_groups(group_by_prompt(responses), stage, trusted, llm, stage.reward, run.config.seed)
    record_drops(run, f"judges-{shard}", judged.drops)
    return judged


async def run_batch(stage_run: StageRun, prompts: list[Row], shard: str, trust: dict[str, Trust],
                    requesting: asyncio.Semaphore, target: TargetTracker) -> Judged | None:
    """One batch of prompts, or None when the target or a budget ended the stage before it started. Its
    model requests hold a slot of `requesting`; its landings do not, so the next batch generates while
    this one's gates run (the gates take one batch at a time)."""
    run, stage = stage_run.run, stage_run.run.config.preferences
    if (done := stage_run.finished(shard, target)) is not None:  # an earlier attempt of this run landed it
        return done
    trusted = [j for j in stage.judges if trust[j].trusted]
    async with requesting:
        if not await target.start_batch():
            return None
        scored = await stage_run.call(make_responses, quote(run), quote(prompts), shard)
        landing = asyncio.create_task(stage_run.land("responses", scored.rows, shard))  # lands while judges work
        judged = await stage_run.call(make_pairs, quote(run), quote(scored.rows), trusted, shard)
        target.generated("preferences", len(judged.pairs))  # pending before the slot frees: the next batch sees them
    outcomes = await landing
    pairs = [preference_row(p) for p in judged.pairs]
    outcomes += await stage_run.land("preferences", pairs, shard, target, pending=True)
    if stage.best_of_n.enabled and trust["reward_model"].trusted:
        groups = group_by_prompt(scored.rows).values()
        best = [row for group in groups if (row := best_of_n(group, stage.best_of_n.min_reward))]
        outcomes += await stage_run.land("dialogues", best, f"best_of_n-{shard}")
    stage_run.mark_finished(shard, judged, outcomes)
    return judged


@flow(name="preferences", log_prints=True)
async def preferences_flow(config: RunConfig, run_date: str | None = None, prompt_batches: list[str] | None = None
                     ) -> dict:
    """Make the `responses`, `preferences` and best-of-n `dialogues` of one night from published prompts."""
    stage = config.preferences
    landing_size = stage.batch_size * stage.responses_per_prompt  # one gate batch per batch of prompts
    async with open_stage(config, STAGE, run_date, DATASETS, landing_size) as stage_run:
        run = stage_run.run
        prompts = select_prompts(run.catalog, stage.prompts, prompt_batches)
        if not prompts:
            raise NoPrompts(f"preferences.prompts selects no published prompt ({stage.prompts.model_dump()}): "
                            "run the prompts stage first, or widen run_dates, task_types or sources")
        llm = run.chat_engine(stage.llm_judge_model()) if "llm_judge" in stage.judges else None
        trust = await judge_trust(run.catalog, stage, config.models, run.reward_engine(stage.reward), llm,
                                  config.seed)
        requesting = asyncio.Semaphore(stage.batches_in_flight)
        planned = list(chunks(prompts, stage.batch_size))
        await stage_run.plan(len(planned))
        target = stage_run.target(stage.target, "preferences")
        judged = await asyncio.gather(*(run_batch(stage_run, list(b), f"{i:05d}", trust, requesting, target)
                                        for i, b in enumerate(planned)))
        summary = await _report(stage_run, prompts, [b for b in judged if b is not None], trust)
        summary["ended_by"] = target.end()
        if stage.target.rows and summary["pairs"] < stage.target.rows:
            get_run_logger().warning("preferences: %d pairs published of the %d targeted; ended by %s",
                                     summary["pairs"], stage.target.rows, summary["ended_by"])
    print(f"preferences: {summary['prompts']} prompts, {summary['pairs']} pairs {summary['pairs_per_judge']}, "
          f"{summary['best_of_n']} best-of-n rows")
    return summary


async def _report(stage_run: StageRun, prompts: list[Row], batches: list[Judged], trust: dict[str, Trust]) -> dict:
    run, stage = stage_run.run, stage_run.run.config.preferences
    decisions = {pid: d for judged in batches for pid, d in judged.decisions.items()}
    kept = Counter(p.judge for judged in batches for p in judged.pairs)
    rows = judge_report(decisions, kept, trust, list(stage.judges))
    run.catalog.record_judges(run.run_id, rows)
    outcomes = stage_run.lander.outcomes
    published = Counter()
    for o in outcomes:
        published[o["dataset"]] += o["rows_out"]
    counts = {"prompts": len(prompts), "responses": published["responses"], "pairs": published["preferences"],
              "best-of-n": published["dialogues"]}
    name = run.config.name
    await acreate_markdown_artifact(report_markdown(run.run_id, rows, counts), key=artifact_key(name, "preferences-judges"),
                                    description=f"Judge report of {run.run_id}")
    await acreate_table_artifact(rows, key=artifact_key(name, "preferences-judges-table"))
    await acreate_table_artifact(batches_table(STAGE, outcomes), key=artifact_key(name, "preferences-batches"))
    return {"run_id": run.run_id, "prompts": len(prompts), "responses": published["responses"],
            "pairs": published["preferences"], "pairs_per_judge": dict(kept), "best_of_n": published["dialogues"],
            "resumed_batches": stage_run.resumed,
            "judges": rows, "trust": {j: t.to_dict() for j, t in trust.items()}, "batches": outcomes}
