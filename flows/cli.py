"""The `sdg` command line: run the pipeline, build test models, query and export the lake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from flows.config import ConfigError, load_config

app = typer.Typer(help="Synthetic alignment data on Prefect: prompts, dialogues, preference pairs.", no_args_is_help=True)
models_app = typer.Typer(help="Models: the embedded default and tiny test models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console(stderr=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="run config (YAML); default: all defaults")]


def _config(path: Path | None):
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("check")
def check_config(config: ConfigOption = None) -> None:
    """Validate a run config and print it resolved."""
    cfg = _config(config)
    typer.echo(cfg.model_dump_json(indent=2))


@app.command("run")
def run(
    config: ConfigOption = None,
    run_date: Annotated[Optional[str], typer.Option(help="YYYY-MM-DD; default: today (UTC)")] = None,
) -> None:
    """Run the nightly pipeline the config describes (a rerun of the same date overwrites, never duplicates)."""
    import asyncio

    from flows.nightly import nightly_flow

    summary = asyncio.run(nightly_flow(config=_config(config), run_date=run_date))
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command("quickstart")
def quickstart(config: ConfigOption = None) -> None:
    """A handful of questions and answers from the default model, written as Parquet."""
    from flows.quickstart import quickstart_flow

    typer.echo(quickstart_flow(_config(config)))


@models_app.command("tiny")
def models_tiny(out: Annotated[Path, typer.Argument(help="folder to write chat/ and reward/ into")]) -> None:
    """Build a tiny chat model and a 5-label reward model in seconds (their text is noise by design)."""
    from engines.tiny import build_tiny_models

    paths = build_tiny_models(out)
    typer.echo(f"chat model:   {paths['chat']}")
    typer.echo(f"reward model: {paths['reward']}")
    typer.echo("These models are random: their text is noise by design. Use them to test pipelines, not data.")


@models_app.command("default")
def models_default() -> None:
    """Prepare the embedded default model (de-quantize once, cache as safetensors) and print its folder."""
    from engines.embedded import embedded_model_dir

    typer.echo(str(embedded_model_dir()))


# Commands of the lake and the gates live in their own modules; importing them registers them.
import flows.cli_lake  # noqa: E402,F401
import flows.cli_quality  # noqa: E402,F401
import flows.cli_judge  # noqa: E402,F401
