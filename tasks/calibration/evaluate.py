"""Score a judge on calibration pairs the RewardBench way.

Rules:
- a pair is right only when the judge puts chosen strictly above rejected: a tie is wrong;
- a pair the judge could not score (an engine error, no reward, a NaN reward; for an LLM judge a
  reading that names neither response) is wrong and also counted in `errors`;
- an LLM judge is asked twice with the responses swapped (`ask_both_orders`); it is right only
  when chosen wins both readings, readings that disagree are a tie (wrong, not an error);
- `accuracy` is over all pairs; `mean_subset_accuracy` is the mean of the per-subset accuracies
  (RewardBench's section score), so a large subset does not drown a small one.
Pairs are rows {"subset", "prompt", "chosen", "rejected"} (an "id" is kept when present) from JSONL
or Parquet; prompt is a string (one user turn) or a list of {"role", "content"} messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.types import ChatEngine, Message, RewardEngine
from tasks.jsonl import read_objects

REQUIRED_COLUMNS = ("subset", "prompt", "chosen", "rejected")


class PairsError(ValueError):
    pass


def shipped_pairs_path() -> Path:
    """The calibration set built by `tasks.calibration.build` and shipped with the package."""
    return Path(__file__).resolve().parent / "pairs.jsonl"


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise PairsError(f"{path}: not a readable Parquet file: {exc}") from None
    if path.suffix not in (".jsonl", ".json"):
        raise PairsError(f"{path}: unknown pairs format {path.suffix!r}; use .jsonl or .parquet")
    return [row for _, row in read_objects(path, PairsError)]


def _check_prompt(prompt: Any, where: str) -> None:
    if isinstance(prompt, str):
        return
    if not isinstance(prompt, list) or not prompt or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt):
        raise PairsError(f"{where}: prompt must be a string or a non-empty list of {{role, content}} messages")


def load_pairs(path: str | Path) -> list[dict]:
    """Rows of a pairs file (JSONL or Parquet), checked: every row has the required columns."""
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"{path}: no such pairs file")
    rows = _read_rows(path)
    if not rows:
        raise PairsError(f"{path}: holds no pairs")
    for index, row in enumerate(rows):
        where = f"{path}: row {index + 1}" + (f" (id {row['id']!r})" if "id" in row else "")
        missing = [c for c in REQUIRED_COLUMNS if c not in row or row[c] is None]
        if missing:
            raise PairsError(f"{where}: missing column(s) {', '.join(missing)}; "
                             f"a pair needs {', '.join(REQUIRED_COLUMNS)}")
        _check_prompt(row["prompt"], where)
        for column in ("subset", "chosen", "rejected"):
            if not isinstance(row[column], str):
                raise PairsError(f"{where}: {column} must be a string, got {type(row[column]).__name__}")
    return rows


def prompt_messages(prompt: str | list[Message]) -> list[Message]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def conversation(prompt: str | list[Message], answer: str) -> list[Message]:
    return [*prompt_messages(prompt), {"role": "assistant", "content": answer}]


@dataclass
class CalibrationReport:
    judge: str
    pairs: int
    correct: int
    errors: int
    accuracy: float
    per_subset: dict[str, dict]  # subset -> {"pairs", "correct", "errors", "accuracy"}
    mean_subset_accuracy: float

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(rows: Sequence[Mapping], outcomes: Sequence[bool | None], judge: str) -> CalibrationReport:
    """The report of one outcome per pair: True right, False wrong, None not scored (wrong and an error)."""
    if len(rows) != len(outcomes):
        raise ValueError(f"{len(rows)} pairs but {len(outcomes)} outcomes")
    if not rows:
        raise ValueError("no pairs to compute an accuracy over")
    per_subset: dict[str, dict] = {}
    for row, outcome in zip(rows, outcomes):
        counts = per_subset.setdefault(row["subset"], {"pairs": 0, "correct": 0, "errors": 0})
        counts["pairs"] += 1
        counts["correct"] += outcome is True
        counts["errors"] += outcome is None
    for counts in per_subset.values():
        counts["accuracy"] = counts["correct"] / counts["pairs"]
    per_subset = dict(sorted(per_subset.items()))
    correct = sum(c["correct"] for c in per_subset.values())
    return CalibrationReport(
        judge=judge, pairs=len(rows), correct=correct, errors=sum(c["errors"] for c in per_subset.values()),
        accuracy=correct / len(rows), per_subset=per_subset,
        mean_subset_accuracy=sum(c["accuracy"] for c in per_subset.values()) / len(per_subset))


def _usable(reward: float | None) -> bool:
    return reward is not None and not math.isnan(reward)


async def evaluate_reward(engine: RewardEngine, pairs: Sequence[Mapping], judge: str) -> CalibrationReport:
    """Score every chosen and rejected conversation in one `engine.score` call, then compare."""
    conversations = [conversation(p["prompt"], p["chosen"]) for p in pairs]
    conversations += [conversation(p["prompt"], p["rejected"]) for p in pairs]
    results = await engine.score(conversations)
    if len(results) != len(conversations):
        raise RuntimeError(f"reward engine {judge!r} returned {len(results)} results for {len(conversations)} "
                           "conversations")
    outcomes: list[bool | None] = []
    for chosen, rejected in zip(results[:len(pairs)], results[len(pairs):]):
        if chosen.error or rejected.error or not (_usable(chosen.reward) and _usable(rejected.reward)):
            outcomes.append(None)
        else:
            outcomes.append(chosen.reward > rejected.reward)
    return accuracy(pairs, outcomes, judge)


async def evaluate_llm_judge(engine: ChatEngine, pairs: Sequence[Mapping], judge: str,
                             seed: int = 0) -> CalibrationReport:
    """Ask the judge both orders of every pair (chosen first in the item); right when chosen wins both."""
    from tasks.preferences.judges.llm_judge import ask_both_orders, winner  # written alongside; load on use

    items = [(prompt_messages(p["prompt"]), p["chosen"], p["rejected"]) for p in pairs]
    readings = await ask_both_orders(engine, items, seed=seed)
    outcomes: list[bool | None] = []
    for pair_readings in readings:
        if any(r.verdict is None for r in pair_readings):
            outcomes.append(None)  # unparseable or an engine error: no verdict at all
        else:
            outcomes.append(winner(pair_readings) == 0)  # None here is a disagreement: a tie, wrong
    return accuracy(pairs, outcomes, judge)


async def evaluate_judge(name: str, registry: Mapping, pairs: Sequence[Mapping]) -> CalibrationReport:
    """Measure the registry's model `name`: a reward model scores, a chat model judges pairwise."""
    from engines.registry import UnknownModel, get_chat_engine, get_reward_engine

    if name not in registry:
        known = ", ".join(sorted(registry)) or "(none)"
        raise UnknownModel(f"judge {name!r} is not in the model registry; known: {known}")
    if registry[name].kind == "reward":
        return await evaluate_reward(get_reward_engine(name, registry), pairs, name)
    return await evaluate_llm_judge(get_chat_engine(name, registry), pairs, name)
