"""Which published prompts the preferences and dialogues stages start from: by run date, task type and source."""

from __future__ import annotations

from typing import Any

from tasks.llm_step import Row
from tasks.preferences.config import PromptSelection

# Values are bound parameters; the optional filters are fixed clauses, never text from the config.
SELECT_PROMPTS = """
SELECT id, task_type, messages, reference_answer, instruction_ids, instruction_kwargs, turn_form, source,
       CAST(run_date AS VARCHAR) AS run_date
FROM prompts
WHERE {dates}
  AND (len($task_types) = 0 OR list_contains($task_types, task_type))
  AND (len($sources) = 0 OR list_contains($sources, source))
ORDER BY id
"""
ON_DATES = "list_contains($run_dates, CAST(run_date AS VARCHAR))"
ON_LATEST_DATE = "run_date = (SELECT max(run_date) FROM prompts)"
ON_BATCHES = "list_contains($batch_ids, batch_id)"


def select_prompts(catalog: Any, selection: PromptSelection, batch_ids: list[str] | None = None) -> list[Row]:
    """The selected prompts in id order (the same prompts, in the same batches, on every rerun).

    `batch_ids`: the published prompt batches a night's prompts stage handed on (the nightly flow
    passes them), which take the place of the run-date choice; the other filters still apply."""
    where = ON_BATCHES if batch_ids is not None else ON_DATES if selection.run_dates else ON_LATEST_DATE
    sql = SELECT_PROMPTS.format(dates=where)
    params: dict[str, Any] = {"task_types": list(selection.task_types), "sources": list(selection.sources)}
    if batch_ids is not None:
        params["batch_ids"] = list(batch_ids)
    elif selection.run_dates:
        params["run_dates"] = list(selection.run_dates)
    rows = catalog.query(sql, params).to_pylist()
    # several run dates may hold the same prompt (a rerun on another day): answer it once
    unique = list({row["id"]: row for row in rows}.values())
    return unique[: selection.limit] if selection.limit else unique
