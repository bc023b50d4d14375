"""Exports from published data to the files trainers read.

| format            | datasets                 | one JSON line                                                      |
| ----------------- | ------------------------ | ------------------------------------------------------------------ |
| trl-dpo           | preferences              | {prompt: [msgs], chosen: [assistant msgs], rejected: [...]}          |
| trl-sft           | dialogues, preferences   | {messages: [msgs]} (preferences: prompt + chosen)                    |
| steerlm           | dialogues, preferences   | NeMo-Aligner: {system, conversations: [{from, value, label}], mask, type} |
| nemo-aligner-dpo  | preferences              | {prompt, chosen_response, rejected_response, chosen_reward, rejected_reward} with NeMo's <extra_id_*> chat tokens |
| openai-chat       | dialogues, preferences   | {messages: [msgs]} (fine-tuning JSONL)                               |
| sharegpt          | dialogues, preferences   | {conversations: [{from: system|human|gpt, value}]}                   |

A file is written whole or not at all (temp file, then rename).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence

from storage.catalog import Catalog
from storage.lake import check_run_date
from storage.schemas import HELPSTEER2_ATTRIBUTES, check_dataset_name

# NeMo-Aligner's default system prompt and chat tokens (its SteerLM and DPO examples use these).
NEMO_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
NEMO_SYSTEM = "<extra_id_0>System\n{}\n"
NEMO_TURN = "<extra_id_1>{}\n{}\n"
NEMO_END = "<extra_id_1>"
NEMO_ROLES = {"user": "User", "assistant": "Assistant"}
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}

# Which reward column the --min-reward filter reads.
REWARD_COLUMN = {"dialogues": "reward", "preferences": "chosen_reward"}
# Column lists are constants: the export query never takes a name from the caller.
SELECT_ROWS = {
    "dialogues": 'SELECT id, messages, turn_attributes, reward FROM "dialogues"',
    "preferences": 'SELECT id, prompt, chosen, rejected, chosen_reward, rejected_reward, chosen_attributes, '
    'rejected_attributes FROM "preferences"',
}


class ExportError(ValueError):
    pass


def steerlm_label(attributes: dict[str, float | None] | None) -> str | None:
    """HelpSteer2 attributes as NeMo-Aligner's label: integers 0..4, in the HelpSteer2 order.

    >>> steerlm_label({"helpfulness": 3.6, "correctness": 4, "coherence": 4, "complexity": 2.2, "verbosity": 1.9})
    'helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2'
    """
    if not attributes:
        return None
    parts = [f"{name}:{min(4, max(0, round(attributes[name])))}" for name in HELPSTEER2_ATTRIBUTES
             if attributes.get(name) is not None and not math.isnan(attributes[name])]  # unscored: no label
    return ",".join(parts) or None


def _split_system(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """NeMo-Aligner's formats take one system prompt, before the turns."""
    system, turns = (messages[0]["content"], messages[1:]) if messages and messages[0]["role"] == "system" else (None, messages)
    if any(m["role"] == "system" for m in turns):
        raise ExportError("a system message after the first turn; NeMo-Aligner takes one system prompt, first")
    return system, turns


def _steerlm_record(messages: list[dict], labels: Sequence[str | None]) -> dict:
    system, turns = _split_system(messages)
    labels_left = list(labels)
    conversations = []
    for message in turns:
        is_assistant = message["role"] == "assistant"
        label = labels_left.pop(0) if is_assistant and labels_left else None
        conversations.append({"from": NEMO_ROLES[message["role"]], "value": message["content"], "label": label})
    return {"system": system if system is not None else NEMO_SYSTEM_PROMPT, "conversations": conversations,
            "mask": "User", "type": "VALUE_TO_TEXT"}


def _nemo_prompt(messages: list[dict]) -> str:
    system, turns = _split_system(messages)
    text = NEMO_SYSTEM.format(system if system is not None else "")
    text += "".join(NEMO_TURN.format(NEMO_ROLES[m["role"]], m["content"]) for m in turns)
    return text + f"{NEMO_END}Assistant\n"


def _conversation(dataset: str, row: dict) -> list[dict]:
    return row["messages"] if dataset == "dialogues" else row["prompt"] + row["chosen"]


def _trl_dpo(dataset: str, row: dict) -> Iterable[dict]:
    yield {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}


def _messages(dataset: str, row: dict) -> Iterable[dict]:
    yield {"messages": _conversation(dataset, row)}


def _sharegpt(dataset: str, row: dict) -> Iterable[dict]:
    turns = [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in _conversation(dataset, row)]
    yield {"conversations": turns}


def _steerlm(dataset: str, row: dict) -> Iterable[dict]:
    if dataset == "dialogues":
        yield _steerlm_record(row["messages"], [steerlm_label(a) for a in row["turn_attributes"] or []])
        return
    # A preference pair is two attribute-labelled responses: SteerLM learns from both.
    earlier = sum(m["role"] == "assistant" for m in row["prompt"])
    for side in ("chosen", "rejected"):
        labels = [None] * earlier + [steerlm_label(row[f"{side}_attributes"])]
        yield _steerlm_record(row["prompt"] + row[side], labels)


def _nemo_dpo(dataset: str, row: dict) -> Iterable[dict]:
    yield {
        "prompt": _nemo_prompt(row["prompt"]),
        "chosen_response": "".join(m["content"] for m in row["chosen"]) + f"\n{NEMO_END}",
        "rejected_response": "".join(m["content"] for m in row["rejected"]) + f"\n{NEMO_END}",
    } | {
        # NeMo-Aligner falls back to its default only for an absent key; a null would reach torch.
        key: row[key] for key in ("chosen_reward", "rejected_reward") if row[key] is not None
    }


FORMATS: dict[str, tuple[tuple[str, ...], Callable[[str, dict], Iterable[dict]]]] = {
    "trl-dpo": (("preferences",), _trl_dpo),
    "trl-sft": (("dialogues", "preferences"), _messages),
    "steerlm": (("dialogues", "preferences"), _steerlm),
    "nemo-aligner-dpo": (("preferences",), _nemo_dpo),
    "openai-chat": (("dialogues", "preferences"), _messages),
    "sharegpt": (("dialogues", "preferences"), _sharegpt),
}


def export_query(dataset: str, run_dates: Sequence[str] | None, min_reward: float | None) -> tuple[str, list]:
    sql, where, params = SELECT_ROWS[dataset], [], []
    if run_dates:
        where.append("CAST(run_date AS VARCHAR) IN (SELECT unnest(?))")
        params.append([check_run_date(d) for d in run_dates])
    if min_reward is not None:
        where.append(f"{REWARD_COLUMN[dataset]} >= ?")  # column from the constant map above
        params.append(float(min_reward))
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY id", params


def export(
    catalog: Catalog,
    dataset: str,
    fmt: str,
    out: str | os.PathLike,
    run_dates: Sequence[str] | None = None,
    min_reward: float | None = None,
) -> int:
    """Write published rows of `dataset` as `fmt` JSONL to `out`; returns the number of lines."""
    dataset = check_dataset_name(dataset)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    allowed, to_records = FORMATS[fmt]
    if dataset not in allowed:
        raise ExportError(f"format {fmt} exports {' or '.join(allowed)}, not {dataset}")
    catalog.refresh_views()
    sql, params = export_query(dataset, run_dates, min_reward)
    table = catalog.query(sql, params)
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    temp = f"{out}.{os.getpid()}.tmp"
    count = 0
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            for batch in table.to_batches(max_chunksize=2048):
                for row in batch.to_pylist():
                    try:
                        records = list(to_records(dataset, row))
                    except ExportError as exc:
                        raise ExportError(f"{fmt}: {dataset} row {row['id']!r}: {exc}") from None
                    for record in records:
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                        count += 1
        os.replace(temp, out)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return count
