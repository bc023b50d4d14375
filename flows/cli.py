"""The `sdg` command line: run the pipeline, build test models, query and export the lake.

Each group of commands lives in its own module (`cli_run`, `cli_lake`, `cli_quality`,
`cli_judge`) and registers itself here; they share only `cli_common`, so nothing imports in a circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows import cli_judge, cli_lake, cli_quality, cli_run
from flows.cli_common import ConfigOption, load_run_config

app = typer.Typer(help="Synthetic alignment data on Prefect: prompts, dialogues, preference pairs.", no_args_is_help=True)
models_app = typer.Typer(help="Models: the embedded default and tiny test models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.command("check")
def check_config(config: ConfigOption = None) -> None:
    """Validate a run config and print it resolved."""
    typer.echo(load_run_config(config).model_dump_json(indent=2))


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


for commands in (cli_run, cli_lake, cli_quality, cli_judge):
    commands.register(app)
