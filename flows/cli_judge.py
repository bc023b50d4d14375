"""`sdg judge eval`: how well a registry model ranks calibration pairs (RewardBench accuracy)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.cli_common import ConfigOption, console, load_run_config

judge_app = typer.Typer(help="Judges: measure a reward model or an LLM judge on calibration pairs.",
                        no_args_is_help=True)


def _table(report) -> Table:
    view = Table("subset", "pairs", "correct", "errors", "accuracy", title=f"calibration of {report.judge}")
    for subset, counts in report.per_subset.items():
        view.add_row(subset, str(counts["pairs"]), str(counts["correct"]), str(counts["errors"]),
                     f"{counts['accuracy']:.1%}")
    view.add_section()
    view.add_row("overall", str(report.pairs), str(report.correct), str(report.errors), f"{report.accuracy:.1%}")
    view.add_row("mean of subsets", "", "", "", f"{report.mean_subset_accuracy:.1%}")
    return view


async def _evaluate(name: str, registry, pairs):
    from engines.registry import aclose_all
    from tasks.calibration.evaluate import evaluate_judge

    try:
        return await evaluate_judge(name, registry, pairs)
    finally:
        await aclose_all()  # a loaded model is released even when scoring failed


@judge_app.command("eval")
def judge_eval(
    judge: Annotated[str, typer.Option("--judge", "-j",
                                       help="registry name: a reward model, or a chat model as LLM judge")],
    file: Annotated[Optional[Path], typer.Argument(help="pairs (JSONL or Parquet, RewardBench columns); "
                                                        "default: the shipped calibration set")] = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Accuracy of a judge on calibration pairs: right when chosen scores strictly above rejected."""
    from tasks.calibration.evaluate import PairsError, load_pairs, shipped_pairs_path

    cfg = load_run_config(config)
    if judge not in cfg.models:
        known = ", ".join(sorted(cfg.models)) or "(none)"
        console.print(f"[red]unknown judge[/red] {judge!r} is not in the config's models; known: {known}",
                      highlight=False)
        raise typer.Exit(2)
    try:
        pairs = load_pairs(file or shipped_pairs_path())
    except PairsError as exc:
        console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    report = asyncio.run(_evaluate(judge, cfg.models, pairs))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        Console(file=sys.stdout, width=120).print(_table(report))


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")
