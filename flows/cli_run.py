"""`sdg run`: the nightly flow in this process, with a live display per stage and a short summary.

The display (stderr) shows per stage: batches done of planned, rows published per dataset, rows
dropped, tokens per second and time left. The summary says what a person needs next: rows per
dataset, the top drop reasons, time and tokens per model, where the data is and queries to try.
`--json` prints only the machine-readable summary, on stdout.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from flows.cli_common import ConfigOption, console, load_run_config
from flows.progress import PROGRESS, StageProgress
from storage.schemas import DATASETS


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def progress_table(stages: list[StageProgress]) -> Table:
    table = Table(title="sdg run", title_justify="left")
    for column in ("stage", "state", "batches", "published", "dropped", "tokens/s", "elapsed", "left"):
        left = column in ("stage", "state", "published")
        table.add_column(column, justify="left" if left else "right", no_wrap=column in ("stage", "state"))
    for p in stages:
        batches = f"{p.batches_done}/{p.batches_planned}" if p.batches_planned else f"{p.landed} landed"
        published = ", ".join(f"{d} {n}" for d, n in p.published.items()) or "-"
        rate = f"{p.tokens / p.elapsed:.0f}" if p.elapsed > 0 and p.tokens else "-"
        table.add_row(p.stage, p.state, batches, published, str(p.dropped), rate, _duration(p.elapsed),
                      _duration(p.time_left()))
    return table


class _LiveView:
    def __rich__(self) -> Group:
        stages = PROGRESS.snapshot()
        return Group(progress_table(stages) if stages else "starting: loading models and the Prefect API ...")


def run_ids(summary: dict) -> list[str]:
    return [part["run_id"] for part in summary.values() if isinstance(part, dict) and "run_id" in part]


def night_report(config, summary: dict, config_path: Path | None) -> dict:
    """What the night produced, read back from the catalog: rows, drops and usage of its runs."""
    from storage.catalog import Catalog

    catalog = Catalog(config.lake)
    ids = run_ids(summary)
    rows = [{"dataset": d, "rows": catalog.query(f"SELECT count(*) AS n FROM {d} WHERE list_contains($ids, run_id)",
                                                 {"ids": ids}).to_pylist()[0]["n"]}
            for d in DATASETS]  # every dataset has a view, empty until something is published
    drops = catalog.query("SELECT stage, reason, sum(count)::BIGINT AS n FROM drops WHERE list_contains($ids, run_id) "
                          "GROUP BY ALL ORDER BY n DESC, reason LIMIT 5", {"ids": ids}).to_pylist()
    usage = catalog.query("SELECT model, backend, sum(requests)::BIGINT AS requests, "
                          "sum(completion_tokens)::BIGINT AS completion_tokens, sum(seconds) AS seconds "
                          "FROM usage WHERE list_contains($ids, run_id) GROUP BY ALL ORDER BY ALL", {"ids": ids}).to_pylist()
    flag = f" -c {config_path}" if config_path else ""
    queries = [f'sdg sql{flag} "SELECT task_type, count(*) FROM prompts GROUP BY ALL"',
               f'sdg sql{flag} "SELECT judge, count(*), avg(margin) FROM preferences GROUP BY ALL"',
               f'sdg sql{flag} "SELECT source, count(*), avg(reward) FROM dialogues GROUP BY ALL"']
    return {"rows": rows, "top_drops": drops, "usage": usage, "lake": catalog.lake_dir, "catalog": catalog.path,
            "queries": queries}


def print_report(report: dict, seconds: float) -> None:
    out = console
    out.print(f"\n[bold]Done in {_duration(seconds)}.[/bold] Published rows:")
    for row in report["rows"]:
        out.print(f"  {row['dataset']:12s} {row['rows']}")
    if report["top_drops"]:
        out.print("Top drop reasons:")
        for drop in report["top_drops"]:
            out.print(f"  {drop['n']:6d}  {drop['stage']}: {drop['reason']}", highlight=False)
    if report["usage"]:
        out.print("Models:")
        for u in report["usage"]:
            out.print(f"  {u['model']} ({u['backend']}): {u['requests']} requests, {u['completion_tokens']} tokens "
                      f"written, {_duration(u['seconds'])} busy", highlight=False, soft_wrap=True)
    out.print(f"Data: {report['lake']} (catalog {report['catalog']})", highlight=False, soft_wrap=True)
    out.print("Try:")
    for query in report["queries"]:
        out.print(f"  {query}", highlight=False, markup=False, soft_wrap=True)


def run(
    config_file: Annotated[Optional[Path], typer.Argument(help="run config (YAML); default: all defaults")] = None,
    config: ConfigOption = None,
    run_date: Annotated[Optional[str], typer.Option(help="YYYY-MM-DD; default: today (UTC)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the machine-readable summary")] = False,
) -> None:
    """Run the nightly pipeline the config describes (a rerun of the same date overwrites, never duplicates)."""
    import time

    from flows.nightly import nightly_flow

    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the display says what the logs would; --json too
    path = config_file or config
    cfg = load_run_config(path)
    started = time.monotonic()
    try:
        if as_json:
            summary = asyncio.run(nightly_flow(config=cfg, run_date=run_date))
            typer.echo(json.dumps({**summary, "report": night_report(cfg, summary, path)}, indent=2, default=str))
            return
        with Live(_LiveView(), console=console, refresh_per_second=2, transient=False):
            summary = asyncio.run(nightly_flow(config=cfg, run_date=run_date))
    except Exception as exc:  # noqa: BLE001 - the stage's own error, said once; finished batches are safe
        console.print(f"[red]run failed[/red] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
        console.print("Batches published so far stay published; run the same command again to resume.")
        raise typer.Exit(1) from None
    print_report(night_report(cfg, summary, path), time.monotonic() - started)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
