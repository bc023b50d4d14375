"""Flatten a batch (Arrow, nested conversations) into the flat pandas columns the gate checks.

Great Expectations validates pandas frames of plain columns; it cannot look inside
list<struct{role, content}>. So each rule first becomes a derived column (the roles of a
conversation as one string, its text, its shortest message, ...) computed with Arrow kernels,
and the expectation is then a real GE expectation over that column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quality.minhash import normalize_text
from storage.schemas import HELPSTEER2_ATTRIBUTES

# Role orders, as regular expressions over roles joined with '>'. A leading system turn is allowed.
ENDS_WITH_USER = r"^(?:system>)?user(?:>assistant>user)*$"
ENDS_WITH_ASSISTANT = r"^(?:system>)?user>assistant(?:>user>assistant)*$"
ASSISTANT_TURN = r"^assistant$"

# dataset -> {conversation column: the role order it must follow}
CONVERSATIONS: dict[str, dict[str, str]] = {
    "topics": {},
    "prompts": {"messages": ENDS_WITH_USER},
    "dialogues": {"messages": ENDS_WITH_ASSISTANT},
    "preferences": {"prompt": ENDS_WITH_USER, "chosen": ASSISTANT_TURN, "rejected": ASSISTANT_TURN},
}
# dataset -> the derived text column that de-duplication compares (one pair per prompt, hence `prompt`)
DEDUP_TEXT = {"topics": "topic_text", "prompts": "messages_text", "dialogues": "messages_text",
              "preferences": "prompt_text"}


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _per_row(values: np.ndarray, parents: np.ndarray, rows: int, reduce: np.ufunc) -> np.ndarray:
    """Reduce child values to one per parent row; rows without children stay NaN."""
    out = np.full(rows, np.nan)
    if len(values):
        reduce.at(out, parents, values)  # fmin/fmax: NaN never wins against a number
    return out


def conversation_columns(name: str, conversations: pa.Array) -> dict[str, object]:
    """roles ('user>assistant'), text (contents joined), and message lengths of one conversation column."""
    rows = len(conversations)
    messages = pc.list_flatten(conversations)
    parents = pc.list_parent_indices(conversations).to_numpy()
    offsets = conversations.offsets
    roles = pa.ListArray.from_arrays(offsets, messages.field("role"), mask=conversations.is_null())
    contents = pa.ListArray.from_arrays(offsets, messages.field("content"), mask=conversations.is_null())
    lengths = pc.utf8_length(pc.utf8_trim_whitespace(messages.field("content")))
    # a null content counts as length 0: it is an empty answer, whatever else it is
    lengths = pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False).astype(float)
    return {
        f"{name}_roles": pc.binary_join(roles, ">").to_pandas(),
        f"{name}_text": pc.binary_join(contents, "\n").to_pandas(),  # null when any content is null
        f"{name}_shortest": _per_row(lengths, parents, rows, np.fmin),
        f"{name}_longest": _per_row(lengths, parents, rows, np.fmax),
    }


def _attribute_matrix(struct_array: pa.Array) -> np.ndarray:
    """(rows, 5) float matrix of the HelpSteer2 attributes; nulls become NaN."""
    columns = []
    for attribute in HELPSTEER2_ATTRIBUTES:
        values = pc.struct_field(struct_array, attribute) if len(struct_array) else pa.array([], pa.float64())
        values = pc.if_else(struct_array.is_null(), None, values) if len(struct_array) else values
        columns.append(values.to_numpy(zero_copy_only=False).astype(float))
    return np.column_stack(columns) if columns else np.empty((0, len(HELPSTEER2_ATTRIBUTES)))


def reward_columns(dataset: str, table: pa.Table) -> dict[str, object]:
    """The aggregate reward, per-attribute scores of the kept answer, and the attribute range seen."""
    rows = table.num_rows
    nan = np.full(rows, np.nan)
    if dataset == "preferences":
        chosen = _attribute_matrix(_column(table, "chosen_attributes"))
        rejected = _attribute_matrix(_column(table, "rejected_attributes"))
        both = np.concatenate([chosen, rejected], axis=1)
        reward = _column(table, "chosen_reward").to_numpy(zero_copy_only=False).astype(float)
        scored = chosen  # minimums apply to the answer we keep, not the one we reject
    elif dataset == "dialogues":
        turns = _column(table, "turn_attributes")
        parents = pc.list_parent_indices(turns).to_numpy()
        per_turn = _attribute_matrix(pc.list_flatten(turns))
        scored = np.column_stack([_per_row(per_turn[:, i], parents, rows, np.fmin)
                                  for i in range(len(HELPSTEER2_ATTRIBUTES))])  # the weakest turn counts
        both = np.column_stack([scored, np.column_stack([_per_row(per_turn[:, i], parents, rows, np.fmax)
                                                         for i in range(len(HELPSTEER2_ATTRIBUTES))])])
        reward = _column(table, "reward").to_numpy(zero_copy_only=False).astype(float)
    else:
        return {"reward": nan, "attr_low": nan, "attr_high": nan, **{a: nan for a in HELPSTEER2_ATTRIBUTES}}
    with np.errstate(all="ignore"):
        low = np.nanmin(np.where(np.isnan(both), np.inf, both), axis=1) if rows else nan
        high = np.nanmax(np.where(np.isnan(both), -np.inf, both), axis=1) if rows else nan
    low = np.where(np.isinf(low), np.nan, low)
    high = np.where(np.isinf(high), np.nan, high)
    return {"reward": reward, "attr_low": low, "attr_high": high,
            **{a: scored[:, i] for i, a in enumerate(HELPSTEER2_ATTRIBUTES)}}


def flatten(dataset: str, table: pa.Table) -> pd.DataFrame:
    """One flat pandas row per batch row: id, derived text/role/length columns and reward scores."""
    columns: dict[str, object] = {"id": _column(table, "id").to_pandas()}
    shortest, longest = [], []
    for name in CONVERSATIONS[dataset]:
        derived = conversation_columns(name, _column(table, name))
        columns.update(derived)
        shortest.append(derived[f"{name}_shortest"])
        longest.append(derived[f"{name}_longest"])
    if dataset == "topics":
        topic = _column(table, "topic")
        columns["topic_text"] = pc.binary_join_element_wise(
            topic, pc.fill_null(_column(table, "subtopic"), ""), " ").to_pandas()
        lengths = pc.utf8_length(pc.utf8_trim_whitespace(topic)).to_numpy(zero_copy_only=False)
        shortest.append(np.asarray(lengths, dtype=float))
        longest.append(np.asarray(lengths, dtype=float))
    rows = table.num_rows
    with np.errstate(all="ignore"):
        columns["shortest_text_chars"] = np.fmin.reduce(shortest) if shortest else np.full(rows, np.nan)
        columns["longest_text_chars"] = np.fmax.reduce(longest) if longest else np.full(rows, np.nan)
    if dataset == "preferences":
        # compared after normalization: "Yes." and "yes" are the same answer
        chosen = normalize_text(pa.array(columns["chosen_text"], pa.large_string()))
        rejected = normalize_text(pa.array(columns["rejected_text"], pa.large_string()))
        columns["chosen_equals_rejected"] = pc.fill_null(pc.equal(chosen, rejected), False).to_pandas()
    columns.update(reward_columns(dataset, table))
    for field in table.schema:  # plain columns as they are: required-column checks see them
        if field.name not in columns and not pa.types.is_nested(field.type):
            columns[field.name] = _column(table, field.name).to_pandas()
    frame = pd.DataFrame(columns)
    frame.index = pd.RangeIndex(rows)
    return frame
