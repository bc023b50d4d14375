"""An LLM step in three parts: build a request per item -> the engine, once for the batch -> parse.

A parse failure or an engine error is a `Drop` with its reason and the raw output kept; it never
crashes the batch and is never silently lost. The step stamps each output row with the lineage
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


@dataclass
class StepResult:
    rows: list[Row] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    reused: bool = False  # rows read back from the lake (already published), not generated

    def extend(self, other: StepResult) -> None:
        self.rows += other.rows
        self.drops += other.drops

    def drop_counts(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.drops))


# parse(item, completion_text) -> output rows, or a Drop explaining why there are none
Parser = Callable[[Any, str], "list[Row] | Drop"]


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
            parsed = parse(item, completion.text)
            if isinstance(parsed, Drop):
                parsed.source = parsed.source or _as_row(item)
                parsed.raw = completion.text if parsed.raw is None else parsed.raw
                out.drops.append(parsed)
            else:
                out.rows += [{**row, **lineage} for row in parsed]  # lineage of the step that made it
    return out


def _as_row(item: Any) -> Row | None:
    return item if isinstance(item, dict) else None
