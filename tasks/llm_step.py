"""An LLM step in three parts: build a request per item -> the engine, once for the batch -> parse.

A parse failure or an engine error is a `Drop` with its reason and the raw output kept; it never
crashes the batch and is never silently lost. A parser that raises is a bug in the parser, not in
the model's answer, but it still costs one item, not the batch: it becomes a `parser_error` drop
with the exception and the raw text. A parser that keeps some of an answer and loses the rest
(duplicate list items, items past the count asked for) returns `Parsed`, so the losses are counted. The step stamps each output row with the lineage
it knows (model, backend, sampling, template, seed); the flow adds run, batch and stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engines.types import ChatEngine, ChatRequest
from tasks.templates import Template

Row = dict[str, Any]


@dataclass
class Drop:
    reason: str
    raw: str | None = None
    source: Row | None = None
    count: int = 1  # items this drop stands for (duplicates removed from one list answer: several)


@dataclass
class Parsed:
    """What a parser kept of one answer, and what it lost on the way."""

    rows: list[Row]
    drops: list[Drop] = field(default_factory=list)


@dataclass
class StepResult:
    rows: list[Row] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    reused: bool = False  # rows read back from the lake (already published), not generated

    def extend(self, other: StepResult) -> None:
        self.rows += other.rows
        self.drops += other.drops

    def drop_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for drop in self.drops:
            counts[drop.reason] += drop.count
        return dict(counts)


# parse(item, completion_text) -> output rows, rows with what was lost, or a Drop saying why there are none
Parser = Callable[[Any, str], "list[Row] | Parsed | Drop"]


def sampling_of(request: ChatRequest) -> Row:
    return {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }


async def run_llm_step(
    engine: ChatEngine,
    items: Sequence[Any],
    build: Callable[[Any], ChatRequest],
    parse: Parser,
    template: Template | None = None,
) -> StepResult:
    """Send every item's request in one engine call, then parse each completion."""
    requests = [build(item) for item in items]
    results = await engine.chat(requests) if requests else []
    out = StepResult()
    for item, request, result in zip(items, requests, results, strict=True):
        if not result.ok:
            out.drops.append(Drop(f"engine_error: {result.error}", None, _as_row(item)))
            continue
        lineage = {
            "model": engine.model_name,
            "backend": engine.backend,
            "sampling": sampling_of(request),
            "template_id": template.id if template else None,
            "template_version": template.version if template else None,
            "seed": request.seed,
        }
        for completion in result.completions:
            if completion.finish_reason == "length" and not completion.text.strip():
                out.drops.append(Drop("empty_truncated_answer", completion.text, _as_row(item)))
                continue
            parsed = guarded_parse(parse, item, completion.text)
            if isinstance(parsed, Drop):
                parsed = Parsed([], [parsed])
            elif not isinstance(parsed, Parsed):
                parsed = Parsed(parsed)
            for drop in parsed.drops:
                drop.source = drop.source or _as_row(item)
                drop.raw = completion.text if drop.raw is None else drop.raw
            out.drops += parsed.drops
            out.rows += [{**row, **lineage} for row in parsed.rows]  # lineage of the step that made it
    return out


def guarded_parse(parse: Parser, item: Any, text: str) -> list[Row] | Parsed | Drop:
    """`parse(item, text)`, with an exception turned into a `parser_error` drop that keeps the text."""
    try:
        return parse(item, text)
    except Exception as exc:  # noqa: BLE001 - one item's parse, recorded with its raw text
        return Drop(f"parser_error: {type(exc).__name__}: {exc}"[:200], text)


def _as_row(item: Any) -> Row | None:
    return item if isinstance(item, dict) else None
