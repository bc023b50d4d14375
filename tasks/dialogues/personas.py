"""Personas as data: who the simulated user is, what they want, how they write.

The shipped library (personas.jsonl, ours) can be extended or replaced by a file of the user's
own. Every persona needs every field: a missing one fails the run before any model is called,
naming the file, the line and the field.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.dialogues.config import PersonaSettings
from tasks.jsonl import read_objects
from tasks.prompts.common import stable_seed

SHIPPED = Path(__file__).parent / "personas.jsonl"
FIELDS = ("id", "who", "wants", "style")


class PersonaError(ValueError):
    pass


@dataclass(frozen=True)
class Persona:
    id: str
    who: str
    wants: str
    style: str

    def describe(self) -> str:
        """The persona as stored on the row."""
        return json.dumps(asdict(self))


def read_personas(path: Path | str) -> list[Persona]:
    path = Path(path)
    if not path.is_file():
        raise PersonaError(f"{path}: no such persona file")
    personas = []
    for number, data in read_objects(path, PersonaError):
        for name in FIELDS:
            if not isinstance(data.get(name), str) or not data[name].strip():
                raise PersonaError(f"{path}:{number}: persona field {name!r} is missing or empty; "
                                   f"every persona needs {', '.join(FIELDS)}")
        extra = sorted(set(data) - set(FIELDS))
        if extra:
            raise PersonaError(f"{path}:{number}: unknown field(s) {', '.join(extra)}; allowed: {', '.join(FIELDS)}")
        personas.append(Persona(**{name: data[name].strip() for name in FIELDS}))
    return personas


def load_personas(settings: PersonaSettings) -> list[Persona]:
    """Ours, the user's added (a same id replaces ours), or only the user's."""
    own = read_personas(settings.file) if settings.file else []
    if settings.file and not own:
        raise PersonaError(f"{settings.file}: holds no persona")
    chosen = own if settings.replace else list({p.id: p for p in [*read_personas(SHIPPED), *own]}.values())
    ids = [p.id for p in chosen]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise PersonaError(f"{settings.file}: persona id {duplicate!r} appears twice")
    return chosen


def persona_for(prompt_id: str, personas: list[Persona], seed: int) -> Persona:
    """The persona a prompt's dialogue is played with: seeded, so a rerun plays the same user."""
    return random.Random(stable_seed(seed, "persona", prompt_id)).choice(personas)
