"""Versioned prompt templates stored as text files next to the code that uses them.

A template file starts with a small header, then a line `---`, then the body:

    id: open_qa.questions
    version: 2
    ---
    Write {count} questions about {topic}. ...

Bodies use `str.format` fields; a literal brace is doubled (`{{`). Rendering with a missing
variable raises `TemplateError` naming the file, the variable and what was provided, so a run
fails before any model is called.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    id: str
    version: str
    body: str
    path: Path

    @cached_property  # renders run per request: parse the body once
    def variables(self) -> frozenset[str]:
        names = {field for _, field, _, _ in string.Formatter().parse(self.body) if field}
        return frozenset(name.split(".")[0].split("[")[0] for name in names)

    def render(self, **values: object) -> str:
        missing = sorted(self.variables - values.keys())
        if missing:
            provided = ", ".join(sorted(values)) or "(nothing)"
            raise TemplateError(
                f"template {self.path.name} ({self.id} v{self.version}): missing variable(s) "
                f"{', '.join(missing)}; provided: {provided}"
            )
        return self.body.format(**values).strip()

    def check(self, available: set[str]) -> None:
        """Fail early when the stage will not be able to fill every field."""
        missing = sorted(self.variables - available)
        if missing:
            raise TemplateError(
                f"template {self.path.name} ({self.id} v{self.version}) uses {', '.join(missing)}; "
                f"this step provides only: {', '.join(sorted(available))}"
            )


def parse_template(text: str, path: Path) -> Template:
    head, sep, body = text.partition("\n---\n")
    if not sep:
        raise TemplateError(f"template {path}: no '---' line between header and body")
    header: dict[str, str] = {}
    for line in head.splitlines():
        if line.strip():
            key, colon, value = line.partition(":")
            if not colon:
                raise TemplateError(f"template {path}: header line {line!r} is not 'key: value'")
            header[key.strip()] = value.strip()
    for key in ("id", "version"):
        if key not in header:
            raise TemplateError(f"template {path}: header needs {key!r}; found {sorted(header)}")
    try:
        Template(header["id"], header["version"], body, path).variables
    except ValueError as exc:  # unbalanced braces
        raise TemplateError(f"template {path}: body is not a valid format string: {exc}") from None
    return Template(header["id"], header["version"], body, path)


@cache
def load_template(path: str | Path) -> Template:
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"template {path}: no such file")
    return parse_template(path.read_text(encoding="utf-8"), path)
