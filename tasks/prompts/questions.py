"""Questions per task type, each from its own template, and the revision pass.

open QA and writing: questions per leaf topic, then each revised to be more detailed or harder;
math: problems per topic and level, with the generator's answer as reference when it gives one;
coding: Python tasks per topic; closed QA: instructions about a user-supplied document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engines.types import ChatEngine
from tasks.llm_step import Drop, Parsed, Row, StepResult, run_llm_step
from tasks.prompts.common import ask, list_items, row_id, stable_seed, template, user_text, user_turn
from tasks.prompts.config import PromptsStage

# task type -> (template, revise template or None)
TEMPLATES = {
    "open_qa": ("open_qa_questions", "open_qa_revise"),
    "writing": ("writing_tasks", "writing_revise"),
    "math": ("math_problems", None),
    "coding": ("coding_problems", None),
    "closed_qa": ("closed_qa_instructions", None),
}

_ANSWER = re.compile(r"\s*(?:\(|\[|-|–|—)?\s*\**answer\**\s*[:=]\s*(.+?)\)?\s*$", re.IGNORECASE)


def question_items(task_type: str, topics: list[Row], stage: PromptsStage) -> list[Row]:
    """The template values of each request, plus the row fields they carry to the output."""
    items: list[Row] = []
    for t in topics:
        base = {"topic": t["topic"], "subtopic": t["subtopic"] or t["topic"]}
        if task_type == "open_qa":
            items.append({**base, "count": stage.open_qa.per_topic})
        elif task_type == "writing":
            items += [{**base, "text_type": k, "count": stage.writing.per_topic} for k in stage.writing.text_types]
        elif task_type == "math":
            items += [{**base, "level": lvl, "count": stage.math.per_topic} for lvl in stage.math.levels]
        elif task_type == "coding":
            items.append({**base, "count": stage.coding.per_topic})
    return items


def document_items(documents: Iterable[Row], per_document: int) -> list[Row]:
    return [{"document": d["text"], "doc_id": d["doc_id"], "count": per_document} for d in documents]


def split_math_answer(line: str) -> tuple[str, str | None]:
    """'What is 2+3? Answer: 5' -> ('What is 2+3?', '5')."""
    match = _ANSWER.search(line)
    if not match or match.start() == 0:
        return line, None
    return line[: match.start()].strip(), match.group(1).strip().rstrip(".")


def _parse_questions(task_type: str):
    def parse(item: Row, text: str) -> Parsed | Drop:
        answer = list_items(text, item["count"])
        if isinstance(answer, Drop):
            return answer
        rows = []
        for question in answer.items:
            reference = None
            if task_type == "math":
                question, reference = split_math_answer(question)
            content = question
            if task_type == "closed_qa":
                content = f"{item['document']}\n\n{question}"
            rows.append(
                {
                    "id": row_id(task_type, item.get("doc_id"), content),
                    "task_type": task_type,
                    "topic": item.get("topic"),
                    "subtopic": item.get("subtopic"),
                    "messages": user_turn(content),
                    "context": item.get("document"),
                    "reference_answer": reference,
                    "source": "synthetic",
                }
            )
        return Parsed(rows, answer.lost)

    return parse


async def generate_questions(
    engine: ChatEngine, task_type: str, items: list[Row], stage: PromptsStage, seed: int
) -> StepResult:
    tpl = template(TEMPLATES[task_type][0])
    return await run_llm_step(
        engine,
        items,
        lambda item: ask(
            tpl, item, temperature=stage.temperature, max_tokens=stage.max_tokens,
            seed=stable_seed(seed, task_type, *sorted(map(str, item.values()))),
        ),
        _parse_questions(task_type),
        tpl,
    )


async def revise_questions(engine: ChatEngine, task_type: str, rows: list[Row], stage: PromptsStage, seed: int) -> StepResult:
    """Rewrite each question to be more detailed or harder; a failed revision is a drop."""
    tpl = template(TEMPLATES[task_type][1])
    key = "task" if task_type == "writing" else "question"

    def parse(row: Row, text: str) -> list[Row] | Drop:
        revised = user_text(text, tpl)
        if isinstance(revised, Drop):
            revised.reason = f"revision_{revised.reason}"
            return revised
        return [{**row, "id": row_id(task_type, "revised", revised), "messages": user_turn(revised)}]

    return await run_llm_step(
        engine,
        rows,
        lambda row: ask(
            tpl, {key: row["messages"][0]["content"]}, temperature=stage.temperature,
            max_tokens=stage.max_tokens, seed=stable_seed(seed, "revise", row["id"]),
        ),
        parse,
        tpl,
    )
