"""`sdg quarantine list | show | release` and `sdg quality docs`: the gates from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import pyarrow.parquet as pq
import typer

from flows.cli_common import ConfigOption, console, load_run_config

quarantine_app = typer.Typer(help="Batches that failed their gate: list, inspect, release.", no_args_is_help=True)
quality_app = typer.Typer(help="Quality gates: Great Expectations Data Docs.", no_args_is_help=True)


def _lake_and_catalog(config: Path | None):
    from storage.catalog import Catalog
    from storage.lake import Lake

    cfg = load_run_config(config)
    lake = Lake(cfg.lake)
    return cfg, lake, Catalog(cfg.lake, lake)


def _read_json(lake, url: str) -> dict:
    with lake.fs.open(url) as handle:
        return json.load(handle)


def _find(lake, batch: str) -> dict:
    for found in lake.list_quarantined():
        if found["batch_id"] == batch:
            return found
    console.print(f"[red]error[/red] no quarantined batch {batch!r}; see `sdg quarantine list`")
    raise typer.Exit(1)


@quarantine_app.command("list")
def quarantine_list(config: ConfigOption = None,
                    dataset: Annotated[Optional[str], typer.Option(help="only this dataset")] = None) -> None:
    """Quarantined batches with the checks they failed."""
    _, lake, _ = _lake_and_catalog(config)
    batches = lake.list_quarantined(dataset)
    if not batches:
        typer.echo("no quarantined batches")
    for found in batches:
        report = _read_json(lake, found["report_url"]) if found["report_url"] else {}
        failed = ", ".join(report.get("failed", [])) or "?"
        typer.echo(f"{found['dataset']}\t{found['run_date']}\t{found['batch_id']}\t{report.get('rows_in', '?')} rows\tfailed: {failed}")


@quarantine_app.command("show")
def quarantine_show(batch: Annotated[str, typer.Argument(help="batch id")], config: ConfigOption = None) -> None:
    """A quarantined batch's report: each check with what was observed next to what was required."""
    _, lake, _ = _lake_and_catalog(config)
    found = _find(lake, batch)
    report = _read_json(lake, found["report_url"])
    typer.echo(f"{report['dataset']} batch {batch} ({report['rows_in']} rows, run {report['run_id']}): {report['state']}")
    for check in report["checks"]:
        mark = "ok  " if check["success"] else "FAIL"
        typer.echo(f"  {mark} {check['expectation']}: observed {check.get('observed')} (required {check.get('threshold')})")
        if not check["success"] and check.get("details"):
            typer.echo(f"       {json.dumps(check['details'], default=str)[:300]}")
    typer.echo(f"  drops: {json.dumps(report['drops'])}")
    typer.echo(f"  reward: {json.dumps(report['reward'].get('kept', {}))}")
    typer.echo(f"  batch: {found['url']}")


@quarantine_app.command("release")
def quarantine_release(
    batch: Annotated[str, typer.Argument(help="batch id")],
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="publish even if the gate fails again")] = False,
    reason: Annotated[Optional[str], typer.Option("--reason", help="why a forced release is right (recorded)")] = None,
) -> None:
    """Re-validate a quarantined batch and publish it if it now passes (or, with --force --reason, anyway)."""
    if force and not (reason and reason.strip()):
        console.print("[red]error[/red] --force needs --reason TEXT: a forced release is recorded with its reason")
        raise typer.Exit(2)
    from quality.gate import run_gate

    cfg, lake, catalog = _lake_and_catalog(config)
    found = _find(lake, batch)
    previous = _read_json(lake, found["report_url"]) if found["report_url"] else {}
    with lake.fs.open(found["url"], "rb") as handle:
        table = pq.read_table(handle)
    # back through staging, as any batch: the gate reads staging and moves it to its verdict
    from storage.lake import LakeError
    from storage.schemas import SchemaError

    try:
        staged = lake.stage_batch(found["dataset"], found["run_date"], batch, table)
    except (LakeError, SchemaError) as exc:
        console.print(f"[red]error[/red] {batch} cannot be staged again: {exc}")
        raise typer.Exit(1) from None
    quality = getattr(cfg, "quality", None)
    if quality is None:
        from quality.config import QualityConfig

        quality = QualityConfig()
    report = run_gate(lake, catalog, staged, quality, previous.get("run_id", "release"),
                      force_reason=reason.strip() if force else None)
    typer.echo(f"{batch}: {report.state} ({report.rows_out} of {report.rows_in} rows published)")
    if report.state != "published":
        typer.echo(f"still failing: {', '.join(report.failed)}; see `sdg quarantine show {batch}`")
        raise typer.Exit(1)


@quality_app.command("docs")
def quality_docs(
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option("--out", help="folder for the HTML site")] = Path("quality-docs"),
    last: Annotated[int, typer.Option(help="how many of the latest gated batches")] = 20,
) -> None:
    """Build GE Data Docs (HTML) for the latest gated batches and print the index path."""
    from quality.docs import build_docs, recent_reports

    _, lake, _ = _lake_and_catalog(config)
    reports = recent_reports(lake, last)
    if not reports:
        typer.echo("no gated batches yet")
        raise typer.Exit(1)
    typer.echo(build_docs(reports, str(out)))


def register(app: typer.Typer) -> None:
    app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(quality_app, name="quality")
