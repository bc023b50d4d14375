"""The topic tree: macro topics from the generator, subtopics per macro topic, user topics merged.

Near-duplicate topics ("Personal finance" / "personal finances") are removed by word-set
Jaccard after normalising; the tree is small, so a pairwise pass is the simple right tool.
"""

from __future__ import annotations

import re

from engines.types import ChatEngine
from tasks.llm_step import Drop, Parsed, Row, StepResult, run_llm_step
from tasks.prompts.common import ListAnswer, ask, list_items, row_id, stable_seed, template
from tasks.prompts.config import PromptsStage


def _words(topic: str) -> frozenset[str]:
    return frozenset(w.rstrip("s") for w in re.findall(r"[a-z0-9]+", topic.lower()))


def near_duplicate(a: str, b: str, threshold: float) -> bool:
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return wa == wb
    return len(wa & wb) / len(wa | wb) >= threshold


def dedupe_topics(rows: list[Row], threshold: float) -> tuple[list[Row], list[Drop]]:
    """Keep the first of each group of near-duplicate (topic, subtopic) pairs."""
    kept: list[Row] = []
    drops: list[Drop] = []
    for row in rows:
        label = row["subtopic"] or row["topic"]
        same_parent = (k for k in kept if (k["subtopic"] is None) == (row["subtopic"] is None))
        if any(near_duplicate(label, k["subtopic"] or k["topic"], threshold) for k in same_parent):
            drops.append(Drop("near_duplicate_topic", label, row))
        else:
            kept.append(row)
    return kept, drops


def topic_row(topic: str, subtopic: str | None, source: str) -> Row:
    return {"id": row_id("topic", topic.lower(), (subtopic or "").lower()), "topic": topic, "subtopic": subtopic, "source": source}


async def generate_topics(engine: ChatEngine, stage: PromptsStage, seed: int) -> StepResult:
    """Macro topics (generated + user), then subtopics for each; rows of the `topics` dataset."""
    settings = stage.topics
    out = StepResult()
    macro_rows = [topic_row(t, None, "config") for t in settings.user_topics]
    if settings.macro_topics:
        tpl = template("topics_macro")
        step = await run_llm_step(
            engine,
            [{"count": settings.macro_topics}],
            lambda item: ask(tpl, item, temperature=stage.temperature, max_tokens=stage.max_tokens, seed=seed),
            lambda item, text: _topics(list_items(text, item["count"]), None),
            tpl,
        )
        out.drops += step.drops
        macro_rows += step.rows
    macro_rows, dropped = dedupe_topics(macro_rows, settings.near_duplicate_jaccard)
    out.drops += dropped
    out.rows += macro_rows
    if settings.subtopics_per_topic:
        tpl = template("topics_sub")
        items = [{"topic": r["topic"], "count": settings.subtopics_per_topic} for r in macro_rows]
        step = await run_llm_step(
            engine,
            items,
            lambda item: ask(
                tpl, item, temperature=stage.temperature, max_tokens=stage.max_tokens,
                seed=stable_seed(seed, "sub", item["topic"]),
            ),
            lambda item, text: _topics(list_items(text, item["count"]), item["topic"]),
            tpl,
        )
        subs, dropped = dedupe_topics(step.rows, settings.near_duplicate_jaccard)
        out.rows += subs
        out.drops += step.drops + dropped
    if not out.rows:
        raise ValueError("the topic tree is empty: set prompts.topics.user_topics or prompts.topics.macro_topics > 0")
    return out


def _topics(answer: ListAnswer | Drop, parent: str | None) -> Parsed | Drop:
    if isinstance(answer, Drop):
        return answer
    if parent is None:
        return Parsed([topic_row(t, None, "llm") for t in answer.items], answer.lost)
    return Parsed([topic_row(parent, t, "llm") for t in answer.items], answer.lost)


def leaf_topics(rows: list[Row]) -> list[Row]:
    """Subtopic rows, plus macro topics that have none (user topics when subtopics are off)."""
    with_children = {r["topic"] for r in rows if r["subtopic"]}
    return [r for r in rows if r["subtopic"] or r["topic"] not in with_children]
