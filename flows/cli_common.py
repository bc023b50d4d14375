"""What every `sdg` command shares: the error console, the `--config` option and loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from flows.config import ConfigError, RunConfig, load_config

console = Console(stderr=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="run config (YAML); default: all defaults")]


def load_run_config(path: Path | None) -> RunConfig:
    """The run config, or exit 2 with the config error (the field, the value, what is allowed)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]config error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
