"""Reading a JSONL file of objects, with an error that names the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def read_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; `error(message)` for a line that is not a JSON object."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}: line {number} is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise error(f"{path}: line {number} is a {type(value).__name__}, not an object")
        yield number, value
