"""The gate's report as Prefect artifacts (a table and a markdown summary), when run inside a flow."""

from __future__ import annotations

import sys
from typing import Any


def _in_prefect_run() -> bool:
    if "prefect" not in sys.modules:  # nothing can be running a flow without prefect imported
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _key(text: str) -> str:
    # artifact keys allow lowercase letters, digits and dashes only
    return "".join(c if c.isalnum() else "-" for c in text.lower())[:100].strip("-")


def _reward_text(stats: dict[str, Any]) -> str:
    if not stats.get("scored"):
        return "no scored rows"
    return f"{stats['scored']} scored, mean {stats['mean']:.2f}, min {stats['min']:.2f}, max {stats['max']:.2f}"


def report_markdown(report: dict[str, Any]) -> str:
    failed = [c["expectation"] for c in report["checks"] if not c["success"]]
    lines = [
        f"## Gate: {report['dataset']} batch `{report['batch_id']}` -> **{report['state']}**",
        "",
        f"- rows in: {report['rows_in']}, rows published: {report['rows_out']}",
        f"- drops: {', '.join(f'{k}={v}' for k, v in report['drops'].items()) or 'none'}",
        f"- failed checks: {', '.join(failed) or 'none'}",
        f"- reward (kept rows): {_reward_text(report['reward'].get('kept') or {})}",
        f"- report: {report.get('report_url', '')}",
    ]
    if report.get("forced_reason"):
        lines.append(f"- forced release, reason: {report['forced_reason']}")
    if report.get("mix"):
        columns = [c for c in report["mix"][0] if c != "rows"]
        lines += ["", "| " + " | ".join([*columns, "rows"]) + " |", "|" + " --- |" * (len(columns) + 1)]
        lines += ["| " + " | ".join(str(r[c] if r[c] is not None else "-") for c in [*columns, "rows"]) + " |"
                  for r in report["mix"]]
    return "\n".join(lines)


def _artifact_args(report: dict[str, Any]) -> tuple[dict, dict]:
    rows = [{"expectation": c["expectation"], "success": c["success"], "observed": str(c.get("observed")),
             "threshold": str(c.get("threshold"))} for c in report["checks"]]
    key = _key(f"gate-{report['dataset']}")  # one key per dataset: the Artifacts page keeps each batch's version
    table = {"table": rows, "key": key, "description": f"gate checks of {report['batch_id']}"}
    markdown = {"markdown": report_markdown(report), "key": f"{key}-summary",
                "description": f"gate summary of {report['batch_id']}"}
    return table, markdown


def publish_artifacts(report: dict[str, Any]) -> bool:
    """Create the table and markdown artifacts; returns False (and does nothing) outside a run."""
    if not _in_prefect_run():
        return False
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    table, markdown = _artifact_args(report)
    create_table_artifact(**table)
    create_markdown_artifact(**markdown)
    return True


async def apublish_artifacts(report: dict[str, Any]) -> bool:
    """The same from async code: no sync API client is built (each costs an SSL context)."""
    if not _in_prefect_run():
        return False
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

    table, markdown = _artifact_args(report)
    await acreate_table_artifact(**table)
    await acreate_markdown_artifact(**markdown)
    return True
