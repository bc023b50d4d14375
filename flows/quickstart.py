"""The first job: a handful of questions and answers from the default model, written as Parquet.

It proves a fresh machine can produce real text offline; the nightly flow grows out of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, task

from engines.registry import aclose_all, get_chat_engine
from engines.types import ChatRequest
from flows.config import RunConfig
from tasks.llm_step import StepResult, run_llm_step
from tasks.prompts.config import PromptsStage
from tasks.prompts.questions import generate_questions, question_items
from tasks.prompts.topics import topic_row


async def _questions_and_answers(config: RunConfig) -> tuple[StepResult, StepResult]:
    settings = config.quickstart
    engine = get_chat_engine(settings.generator, config.models)
    sampling = config.models[settings.generator].sampling
    stage = PromptsStage(temperature=sampling.temperature, max_tokens=sampling.max_tokens)
    stage.open_qa.per_topic = settings.questions_per_topic
    topics = [topic_row(t, None, "config") for t in settings.topics]
    questions = await generate_questions(engine, "open_qa", question_items("open_qa", topics, stage), stage, config.seed)
    answers = await run_llm_step(
        engine,
        questions.rows,
        lambda row: ChatRequest(messages=row["messages"], temperature=0.0, max_tokens=sampling.max_tokens),
        lambda row, text: [{"id": row["id"], "topic": row["topic"], "question": row["messages"][0]["content"],
                            "messages": [*row["messages"], {"role": "assistant", "content": text.strip()}]}],
    )
    await aclose_all()
    return questions, answers


@task(name="quickstart-generate")
def generate(config: RunConfig) -> tuple[StepResult, StepResult]:
    return asyncio.run(_questions_and_answers(config))


@flow(name="quickstart", log_prints=True)
def quickstart_flow(config: RunConfig) -> str:
    questions, answers = generate(config)
    created = dt.datetime.now(dt.UTC)
    table = pa.Table.from_pylist([{**r, "created_at": created} for r in answers.rows])
    out = Path(config.lake.root) / "quickstart" / f"{created:%Y-%m-%d}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    drops = {**questions.drop_counts(), **answers.drop_counts()}
    summary = f"wrote {table.num_rows} question/answer rows to {out}; drops: {drops or 'none'}"
    print(summary)
    return summary
