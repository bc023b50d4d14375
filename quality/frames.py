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
    "responses": {"prompt": ENDS_WITH_USER, "response": ASSISTANT_TURN},
    "preferences": {"prompt": ENDS_WITH_USER, "chosen": ASSISTANT_TURN, "rejected": ASSISTANT_TURN},
}
# dataset -> the derived text column that de-duplication compares (one pair per prompt, hence `prompt`)
DEDUP_TEXT = {"topics": "topic_text", "prompts": "messages_text", "dialogues": "messages_text",
              "responses": "response_text", "preferences": "prompt_text"}
# Duplicates are looked for within one scope: an instruction-following prompt repeats its base
# prompt and a two-turn prompt its seed by design, so prompts compare only within a task type.
DEDUP_SCOPE = {"prompts": "task_type"}


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _per_row(values: np.ndarray, parents: np.ndarray, rows: int, reduce: np.ufunc) -> np.ndarray:
    """Reduce child values to one per parent row; rows without children stay NaN."""
    out = np.full(rows, np.nan)
    if len(values):
        reduce.at(out, parents, values)  # fmin/fmax: NaN never wins against a number
    return out


def conversation_columns(name: str, conversations: pa.Array) -> tuple[dict[str, object], pa.Array]:
    """(roles 'user>assistant', text length and message lengths of one conversation column; its text).

    The text stays an Arrow array (de-duplication reads it); GE sees only its length, which is
    null when the text is (a null conversation or a null content).
    """
    rows = len(conversations)
    messages = pc.list_flatten(conversations)
    parents = pc.list_parent_indices(conversations).to_numpy()
    offsets = conversations.offsets
    roles = pa.ListArray.from_arrays(offsets, messages.field("role"), mask=conversations.is_null())
    contents = pa.ListArray.from_arrays(offsets, messages.field("content"), mask=conversations.is_null())
    content = messages.field("content")
    # whitespace-only counts as empty; a null content as length 0: an empty answer either way
    blank = pc.fill_null(pc.utf8_is_space(content), True)
    lengths = pc.if_else(blank, 0, pc.fill_null(pc.utf8_length(content), 0))
    lengths = lengths.to_numpy(zero_copy_only=False).astype(float)
    text = pc.binary_join(contents, "\n")  # null when any content is null
    derived = {
        f"{name}_roles": pc.binary_join(roles, ">").to_pandas(),
        f"{name}_chars": pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(float),
        f"{name}_shortest": _per_row(lengths, parents, rows, np.fmin),
        f"{name}_longest": _per_row(lengths, parents, rows, np.fmax),
    }
    return derived, text


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
    elif dataset == "responses":
        scored = _attribute_matrix(_column(table, "attributes"))
        both = scored
        reward = _column(table, "reward").to_numpy(zero_copy_only=False).astype(float)
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


def _squash(texts: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(pc.utf8_lower(texts), pattern=r"[\p{P}\p{S}\s]+", replacement="")


def same_answer(chosen: pa.Array, rejected: pa.Array, head: int = 48, compare: int = 16) -> np.ndarray:
    """Whether two answers are equal ignoring case, punctuation and spacing ("Yes." == "yes").

    Squashing whole long answers is the gate's most expensive string work, so the first `head`
    characters are squashed first: where both keep >= `compare` characters, those are the first
    `compare` characters of the whole squashed answer, and a difference there settles it. Only
    rows that agree (or are short) are squashed whole.
    """
    heads = [_squash(pc.utf8_slice_codeunits(t, 0, head)) for t in (chosen, rejected)]
    short = pc.or_(pc.less(pc.utf8_length(heads[0]), compare), pc.less(pc.utf8_length(heads[1]), compare))
    agree = pc.equal(pc.utf8_slice_codeunits(heads[0], 0, compare), pc.utf8_slice_codeunits(heads[1], 0, compare))
    candidates = np.flatnonzero(pc.fill_null(pc.or_(short, agree), False).to_numpy(zero_copy_only=False))
    result = np.zeros(len(chosen), dtype=bool)
    if len(candidates):
        index = pa.array(candidates)
        equal = pc.equal(_squash(chosen.take(index)), _squash(rejected.take(index)))
        result[candidates] = pc.fill_null(equal, False).to_numpy(zero_copy_only=False)
    return result


def flatten(dataset: str, table: pa.Table) -> tuple[pd.DataFrame, dict[str, pa.Array]]:
    """(one flat pandas row per batch row: id, derived role/length columns, reward scores; texts as Arrow)."""
    columns: dict[str, object] = {"id": _column(table, "id").to_pandas()}
    texts: dict[str, pa.Array] = {}
    shortest, longest = [], []
    for name in CONVERSATIONS[dataset]:
        derived, texts[f"{name}_text"] = conversation_columns(name, _column(table, name))
        columns.update(derived)
        shortest.append(derived[f"{name}_shortest"])
        longest.append(derived[f"{name}_longest"])
    if dataset == "topics":
        topic = _column(table, "topic")
        texts["topic_text"] = pc.binary_join_element_wise(topic, pc.fill_null(_column(table, "subtopic"), ""), " ")
        lengths = pc.utf8_length(pc.utf8_trim_whitespace(topic)).to_numpy(zero_copy_only=False).astype(float)
        columns["topic_chars"] = lengths
        shortest.append(lengths)
        longest.append(lengths)
    rows = table.num_rows
    with np.errstate(all="ignore"):
        columns["shortest_text_chars"] = np.fmin.reduce(shortest) if shortest else np.full(rows, np.nan)
        columns["longest_text_chars"] = np.fmax.reduce(longest) if longest else np.full(rows, np.nan)
    if dataset == "preferences":
        columns["chosen_equals_rejected"] = same_answer(texts["chosen_text"], texts["rejected_text"])
    columns.update(reward_columns(dataset, table))
    for field in table.schema:  # plain columns as they are: required-column checks see them
        if field.name not in columns and not pa.types.is_nested(field.type):
            # Arrow-backed: no Python object per value for columns only checked for presence
            columns[field.name] = _column(table, field.name).to_pandas(types_mapper=pd.ArrowDtype)
    frame = pd.DataFrame(columns)
    frame.index = pd.RangeIndex(rows)
    return frame, texts
