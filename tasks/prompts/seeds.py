"""Seed prompts: real-world prompts from Parquet, JSONL, CSV or a Hugging Face datasets folder.

Each source maps its columns onto a `prompts` row: the prompt becomes a single user turn, an
optional reference answer (GSM8K / MATH solutions) is cut to its final answer for the
ground-truth judge, an optional safety flag is kept or used to remove the row. Every prompt
that does not become a row is a drop with its reason (`empty_prompt`, `unsafe`,
`duplicate_seed`) and its file, so nothing is lost silently.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import polars as pl

from tasks.llm_step import Drop, Row, StepResult
from tasks.prompts.config import SeedSettings, SeedSource
from tasks.prompts.sources import TEXT_DTYPES, SeedError, read_columns, text_values

SEEDS_FIELD = "prompts.seeds.sources"
TRUE_WORDS = ("true", "1", "yes", "y", "t")
FALSE_WORDS = ("false", "0", "no", "n", "f")
FLAG_VALUES = "true/false, 1/0, yes/no (any case), or empty for unknown"


def prompt_id(text: str) -> str:
    """Deterministic id from the prompt text alone: the same seed gets the same id in every run."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}, braces balanced (MATH solutions nest them: \\boxed{\\frac{1}{2}})."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return text[begin:index].strip()
            depth -= 1
    return None  # unbalanced: not a usable answer


def final_answer(solution: str | None) -> str | None:
    """The final answer of a reference solution: after GSM8K's '####', in MATH's last \\boxed{}, else the text.

    >>> final_answer("Half of 84 is 42.\\n#### 42")
    '42'
    >>> final_answer("So $x = \\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> final_answer(" 7 ")
    '7'
    """
    if solution is None:
        return None
    text = solution.strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    else:
        text = _last_boxed(text) or text
    return text or None


def _flag(value: Any, where: str) -> bool | None:
    """An unsafe flag from bool, 0/1 or a yes/no word; None when the cell is empty (not flagged)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise SeedError(f"{where} has value {value!r}, not a flag; allowed: {FLAG_VALUES}")


def _reference_values(frame: pl.DataFrame, source: SeedSource, field: str) -> list[str | None]:
    if source.reference_column is None:
        return [None] * frame.height
    series = frame.get_column("reference_column")
    if not (series.dtype.is_numeric() or series.dtype.base_type() in TEXT_DTYPES):  # 42 is a fine answer
        raise SeedError(
            f"{source.path}: {field}.reference_column = {source.reference_column!r} holds {series.dtype}; "
            "allowed: a column of strings or numbers"
        )
    return [None if v is None else final_answer(str(v)) for v in series.to_list()]


def _read_source(source: SeedSource, field: str) -> list[tuple[str | None, str | None, bool | None]]:
    """(prompt, reference answer, unsafe flag) per row of one source, after every check on its columns."""
    columns = {
        "prompt_column": source.prompt_column,
        "reference_column": source.reference_column,
        "unsafe_column": source.unsafe_column,
    }
    frame = read_columns(source.path, columns, field, source.limit)
    prompts = text_values(frame, "prompt_column", source.path, field, source.prompt_column)
    references = _reference_values(frame, source, field)
    if source.unsafe_column is None:
        flags: list[bool | None] = [None] * frame.height
    else:
        where = f"{source.path}: {field}.unsafe_column = {source.unsafe_column!r}"
        flags = [_flag(v, f"{where}, row {i},") for i, v in enumerate(frame.get_column("unsafe_column").to_list())]
    return list(zip(prompts, references, flags))


def seed_row(prompt: str, reference: str | None, unsafe: bool | None) -> Row:
    """A `prompts` row; the flow adds run, batch and stage lineage (no model wrote a seed)."""
    return {
        "id": prompt_id(prompt),
        "task_type": "seed",
        "topic": None,
        "subtopic": None,
        "messages": [{"role": "user", "content": prompt}],
        "reference_answer": reference,
        "unsafe": unsafe,
        "source": "seed",
    }


def read_seed_prompts(settings: SeedSettings) -> StepResult:
    """Seed rows and the drops (each with its reason, prompt text, file and row) from every source.

    Every source is read and checked before the first row is built, so a bad last source fails
    the stage before anything else happens.
    """
    sources = [(s, _read_source(s, f"{SEEDS_FIELD}[{i}]")) for i, s in enumerate(settings.sources)]
    result, seen = StepResult(), set()
    for source, records in sources:
        for index, (prompt, reference, unsafe) in enumerate(records):
            where = {"seed_source": source.path.name, "row": index}
            text = (prompt or "").strip()  # surrounding whitespace is not part of what the user asked
            if not text:
                result.drops.append(Drop("empty_prompt", prompt, where))
            elif unsafe and settings.unsafe == "remove":
                result.drops.append(Drop("unsafe", text, where))
            elif text in seen:
                result.drops.append(Drop("duplicate_seed", text, where))
            else:
                seen.add(text)
                result.rows.append(seed_row(text, reference, unsafe))
    return result


def load_seed_prompts(settings: SeedSettings) -> tuple[list[Row], dict[str, int]]:
    """Seed `prompts` rows and how many prompts were dropped, per reason."""
    result = read_seed_prompts(settings)
    return result.rows, result.drop_counts()
