"""`sdg sql`, `sdg datasets`, `sdg catalog refresh`, `sdg export`: the lake from the command line."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import pyarrow as pa
import typer
from rich.table import Table

from flows.cli_common import ConfigOption, console, load_run_config
from storage.catalog import Catalog, CatalogError
from storage.exports import FORMATS, ExportError, export
from storage.lake import LakeError
from storage.schemas import SchemaError

catalog_app = typer.Typer(help="The DuckDB catalog over the published lake.", no_args_is_help=True)
OUTPUT_FORMATS = ("table", "csv", "json")
LAKE_ERRORS = (CatalogError, LakeError, SchemaError, ExportError)


def _catalog(config: Path | None) -> Catalog:
    cfg = load_run_config(config)
    try:
        return Catalog(cfg.lake)
    except LAKE_ERRORS as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique (`a`, `a_2`): rows keyed by name would lose a repeated one.

    >>> unique_names(["a", "b", "a", "a_2"])
    ['a', 'b', 'a_3', 'a_2']
    """
    taken, result = set(names), []
    seen: set[str] = set()
    for name in names:
        new, n = name, 1
        while new in seen or (new != name and new in taken):
            n += 1
            new = f"{name}_{n}"
        seen.add(new)
        result.append(new)
    return result


def _show(table: pa.Table, fmt: str) -> None:
    names = unique_names(table.column_names)
    rows = [dict(zip(names, values)) for values in zip(*(column.to_pylist() for column in table.columns))]
    if fmt == "json":
        typer.echo(json.dumps(rows, default=str, ensure_ascii=False, indent=1))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(names)
        writer.writerows([list(row.values()) for row in rows])
        typer.echo(buffer.getvalue(), nl=False)
    else:
        view = Table(*names, show_lines=False)
        for row in rows:
            view.add_row(*[("" if v is None else str(v)) for v in row.values()])
        from rich.console import Console

        Console(file=sys.stdout, width=200).print(view)


def sql(
    query: Annotated[str, typer.Argument(help="SQL over the dataset views and the runs/batches/... tables")],
    output: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    config: ConfigOption = None,
) -> None:
    """Run a read-only SQL query on the catalog."""
    if output not in OUTPUT_FORMATS:
        _fail(ValueError(f"--format {output!r}: choose one of {', '.join(OUTPUT_FORMATS)}"))
    catalog = _catalog(config)
    try:
        _show(catalog.query(query), output)
    except LAKE_ERRORS as exc:
        _fail(exc)


def datasets(config: ConfigOption = None) -> None:
    """Published datasets with their row counts per run date."""
    catalog = _catalog(config)
    try:
        catalog.refresh_views()
        _show(catalog.dataset_counts(), "table")
    except LAKE_ERRORS as exc:
        _fail(exc)


@catalog_app.command("refresh")
def catalog_refresh(config: ConfigOption = None) -> None:
    """Create the catalog if needed and point every dataset view at its published Parquet."""
    catalog = _catalog(config)
    try:
        catalog.refresh_views()
    except LAKE_ERRORS as exc:
        _fail(exc)
    typer.echo(f"catalog refreshed: {catalog.path}")


def export_dataset(
    dataset: Annotated[str, typer.Argument(help="dialogues | preferences")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=" | ".join(FORMATS))],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write")],
    run_date: Annotated[Optional[list[str]], typer.Option("--run-date", help="YYYY-MM-DD; repeat for several")] = None,
    min_reward: Annotated[Optional[float], typer.Option("--min-reward", help="keep rows whose reward is at least this")] = None,
    config: ConfigOption = None,
) -> None:
    """Export published rows in a trainer's format (TRL, NeMo-Aligner, OpenAI, ShareGPT)."""
    catalog = _catalog(config)
    try:
        count = export(catalog, dataset, fmt, out, run_dates=run_date, min_reward=min_reward)
    except LAKE_ERRORS as exc:
        _fail(exc)
    typer.echo(f"wrote {count} {fmt} records to {out}")


def register(app: typer.Typer) -> None:
    app.command("sql")(sql)
    app.command("datasets")(datasets)
    app.command("export")(export_dataset)
    app.add_typer(catalog_app, name="catalog")
