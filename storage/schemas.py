"""One Arrow schema per dataset, in one place, and the check every landed batch goes through.

Conversations are lists of {role, content} structs (not JSON strings) so DuckDB can unnest
them and TRL reads them as conversational columns without parsing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# Same order and names as engines.types.HELPSTEER2_ATTRIBUTES; re-declared so storage imports
# nothing of ours.
HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")

MESSAGE = pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string(), nullable=False)])
CONVERSATION = pa.list_(MESSAGE)
ATTRIBUTES = pa.struct([pa.field(name, pa.float64()) for name in HELPSTEER2_ATTRIBUTES])
SAMPLING = pa.struct(
    [
        pa.field("temperature", pa.float64()),
        pa.field("top_p", pa.float64()),
        pa.field("max_tokens", pa.int32()),
        pa.field("seed", pa.int64()),
    ]
)
# One instruction's verdict on a response (the verifier judge's evidence).
INSTRUCTION_CHECK = pa.struct([pa.field("instruction_id", pa.string()), pa.field("followed", pa.bool_())])
# One of the LLM judge's two readings: the order the responses were shown in (chosen first: "chosen_first",
# else "rejected_first"), the letter it named (null when it named neither) and its raw answer.
LLM_VERDICT = pa.struct([pa.field("order", pa.string()), pa.field("verdict", pa.string()),
                         pa.field("raw", pa.string())])

# Every row carries its lineage (docs/architecture.md): where it came from and how it was sampled.
LINEAGE = [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("model", pa.string()),  # null for seed rows that no model wrote
    pa.field("backend", pa.string()),
    pa.field("sampling", SAMPLING),
    pa.field("template_id", pa.string()),
    pa.field("template_version", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
]


def _schema(*fields: pa.Field) -> pa.Schema:
    return pa.schema([*fields, *LINEAGE])


SCHEMAS: dict[str, pa.Schema] = {
    "topics": _schema(
        pa.field("id", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("subtopic", pa.string()),
        pa.field("source", pa.string(), nullable=False),
    ),
    "prompts": _schema(
        pa.field("id", pa.string(), nullable=False),
        pa.field("task_type", pa.string(), nullable=False),
        pa.field("topic", pa.string()),
        pa.field("subtopic", pa.string()),
        pa.field("messages", CONVERSATION, nullable=False),  # up to and including the last user turn
        pa.field("context", pa.string()),  # closed-QA document
        pa.field("reference_answer", pa.string()),
        pa.field("instruction_ids", pa.list_(pa.string())),
        pa.field("instruction_kwargs", pa.string()),  # JSON: kwargs differ per instruction id
        pa.field("turn_form", pa.string()),  # single | multi | second-turn
        pa.field("unsafe", pa.bool_()),
        pa.field("source", pa.string(), nullable=False),  # synthetic | seed
    ),
    "dialogues": _schema(
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string()),
        pa.field("persona", pa.string()),
        pa.field("messages", CONVERSATION, nullable=False),
        pa.field("turn_attributes", pa.list_(ATTRIBUTES)),  # one per assistant turn
        pa.field("turn_rewards", pa.list_(pa.float64())),
        pa.field("reward", pa.float64()),
        pa.field("source", pa.string()),  # role_play | best_of_n
        # role play: who played the user, the other side's model, what the dialogue had to obey
        pa.field("task_type", pa.string()),
        pa.field("persona_profile", pa.string()),  # JSON {id, who, wants, style}; `persona` is its id
        pa.field("instruction_ids", pa.list_(pa.string())),
        pa.field("instruction_kwargs", pa.string()),
        pa.field("user_model", pa.string()),  # `model`/`sampling` are the assistant side's
        pa.field("user_backend", pa.string()),
        pa.field("user_sampling", SAMPLING),
        pa.field("reward_model", pa.string()),
    ),
    # Every scored response of the preferences stage: judges re-run over these without generating again.
    "responses": _schema(
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("task_type", pa.string()),
        pa.field("prompt", CONVERSATION, nullable=False),  # up to and including the last user turn
        pa.field("response", CONVERSATION, nullable=False),  # the one assistant turn
        pa.field("response_index", pa.int32(), nullable=False),  # 0..K-1 within its prompt
        pa.field("finish_reason", pa.string()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("reference_answer", pa.string()),
        pa.field("instruction_ids", pa.list_(pa.string())),
        pa.field("instruction_kwargs", pa.string()),
        pa.field("attributes", ATTRIBUTES),
        pa.field("reward", pa.float64()),
        pa.field("reward_model", pa.string()),
    ),
    "preferences": _schema(
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string()),
        pa.field("prompt", CONVERSATION, nullable=False),  # TRL's conversational `prompt`
        pa.field("chosen", CONVERSATION, nullable=False),  # the assistant turn(s) only
        pa.field("rejected", CONVERSATION, nullable=False),
        pa.field("judge", pa.string(), nullable=False),  # ground_truth | verifier | reward_model | llm_judge
        pa.field("chosen_reward", pa.float64()),
        pa.field("rejected_reward", pa.float64()),
        pa.field("chosen_attributes", ATTRIBUTES),
        pa.field("rejected_attributes", ATTRIBUTES),
        pa.field("margin", pa.float64()),
        pa.field("chosen_model", pa.string()),
        pa.field("rejected_model", pa.string()),
        # the judge's evidence, typed, so any pair can be audited with SQL
        pa.field("chosen_id", pa.string()),  # ids in `responses`
        pa.field("rejected_id", pa.string()),
        pa.field("reference_answer", pa.string()),  # ground truth
        pa.field("chosen_answer", pa.string()),  # ground truth: the final answers extracted
        pa.field("rejected_answer", pa.string()),
        pa.field("chosen_checks", pa.list_(INSTRUCTION_CHECK)),  # verifier
        pa.field("rejected_checks", pa.list_(INSTRUCTION_CHECK)),
        pa.field("llm_verdicts", pa.list_(LLM_VERDICT)),  # llm judge: both readings
        pa.field("judge_model", pa.string()),  # the reward model or LLM judge that decided
    ),
}

DATASETS: tuple[str, ...] = tuple(SCHEMAS)
JUDGES = ("ground_truth", "verifier", "reward_model", "llm_judge")
ROLES = ("system", "user", "assistant")
# Columns whose values come from a fixed set: (dataset, column) -> allowed values.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {("preferences", "judge"): JUDGES}


class SchemaError(ValueError):
    """A batch that does not match its dataset's schema; the message names dataset, column, problem."""


def check_dataset_name(name: str) -> str:
    """Return the name if it is a known dataset; refuse anything else before it reaches a path or SQL.

    >>> check_dataset_name("preferences")
    'preferences'
    """
    if not isinstance(name, str) or not name:
        raise SchemaError(f"dataset name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or ".." in name or not re.fullmatch(r"[a-z_]+", name):
        raise SchemaError(f"dataset name {name!r} is not allowed: no path separators, '..' or odd characters")
    if name not in SCHEMAS:
        raise SchemaError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return name


def _first_bad_row(values: list[Any], type_: pa.DataType) -> tuple[int, Any, str]:
    for index, value in enumerate(values):
        try:
            pa.array([value], type=type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            return index, value, str(exc)
    return -1, None, "unknown conversion problem"


def _unknown_key(value: Any, type_: pa.DataType) -> str | None:
    """A key of a nested value that its struct type does not have (Arrow would drop it silently)."""
    if value is None:
        return None
    if pa.types.is_struct(type_) and isinstance(value, Mapping):
        names = [f.name for f in type_]
        unknown = sorted(set(value) - set(names))
        if unknown:
            return f"unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(names)}"
        return next((why for f in type_ if (why := _unknown_key(value.get(f.name), f.type))), None)
    if pa.types.is_list(type_) and isinstance(value, (list, tuple)):
        return next((why for item in value if (why := _unknown_key(item, type_.value_type))), None)
    return None


def _column_from_rows(dataset: str, field: pa.Field, rows: list[Mapping[str, Any]]) -> pa.Array:
    values = [row.get(field.name) for row in rows]
    if pa.types.is_nested(field.type):
        for index, value in enumerate(values):
            if why := _unknown_key(value, field.type):
                raise SchemaError(f"{dataset}.{field.name}: row {index}: {why}")
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        index, value, why = _first_bad_row(values, field.type)
        shown = repr(value)[:120]
        raise SchemaError(
            f"{dataset}.{field.name}: row {index} does not fit {field.type} (value {shown}): {why}"
        ) from None


def _check_columns(dataset: str, schema: pa.Schema, names: Iterable[str]) -> None:
    names = set(names)
    unknown = sorted(names - set(schema.names))
    if unknown:
        raise SchemaError(f"{dataset}: unknown column(s) {', '.join(unknown)}; the schema has {', '.join(schema.names)}")
    missing = [f.name for f in schema if not f.nullable and f.name not in names]
    if missing:
        raise SchemaError(f"{dataset}: required column(s) missing: {', '.join(missing)}")


@functools.cache
def _columns(dataset: str) -> tuple[tuple[tuple[int, str], ...], tuple[tuple[int, str], ...]]:
    """(position, name) of the required columns and of the conversation columns of a dataset's schema."""
    schema = SCHEMAS[dataset]
    required = tuple((i, f.name) for i, f in enumerate(schema) if not f.nullable)
    conversations = tuple((i, f.name) for i, f in enumerate(schema) if f.type == CONVERSATION)
    return required, conversations


def _check_nulls(dataset: str, table: pa.Table) -> None:
    for position, name in _columns(dataset)[0]:  # the table has the schema's exact columns by now
        column = table.column(position)
        if column.null_count:
            index = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
            raise SchemaError(f"{dataset}.{name}: row {index} is null, and the column is required")


def _first(bad: pa.Array) -> int:
    return pc.index(bad, True).as_py()


def _all_in(values: pa.Array | pa.ChunkedArray, allowed: tuple[str, ...]) -> bool:
    return set(pc.unique(values).to_pylist()) <= set(allowed)  # the usual case: a handful of values


def _first_outside(values: pa.Array | pa.ChunkedArray, allowed: tuple[str, ...]) -> int:
    """Position of the first value not in `allowed`, or -1."""
    return _first(pc.invert(pc.is_in(values, value_set=pa.array(allowed))))


def _check_choices(dataset: str, table: pa.Table) -> None:
    for (name, column), allowed in CHOICES.items():
        if name != dataset or column not in table.column_names:
            continue
        values = table.column(column)
        if _all_in(values, allowed):
            continue
        index = _first_outside(values, allowed)
        raise SchemaError(f"{dataset}.{column}: row {index} is {values[index].as_py()!r}; allowed: {', '.join(allowed)}")


def _check_conversations(dataset: str, table: pa.Table) -> None:
    """Every message of every conversation column is a {role, content} with a known role and a text.

    Arrow does not enforce the not-null inside a list of structs, and a null message would pass
    straight to TRL or NeMo-Aligner. The usual case costs null counts and one pass over all roles
    (a call per column cost 0.1-0.2 ms a batch with two landing threads); positions are looked for
    only when something is wrong. Chunk by chunk: combining chunks would copy the texts.
    """
    chunks = [(name, first_row, conversations) for position, name in _columns(dataset)[1]
              for first_row, conversations in _with_offsets(table.column(position).chunks)]
    roles = []
    for column, first_row, conversations in chunks:
        messages = _messages(conversations)
        if messages.null_count or messages.field("content").null_count:
            _locate_bad_message(dataset, column, first_row, conversations)
        roles.append(messages.field("role"))
    if roles and not _all_in(pa.chunked_array(roles, pa.string()), ROLES):
        for column, first_row, conversations in chunks:
            _locate_bad_message(dataset, column, first_row, conversations)


def _messages(conversations: pa.ListArray) -> pa.StructArray:
    # The messages of these rows: the column is required, so no null list hides any. Cheaper than
    # flatten(), which goes through a compute call.
    offsets = conversations.offsets
    start = offsets[0].as_py()
    return conversations.values.slice(start, offsets[-1].as_py() - start)


def _with_offsets(chunks: list[pa.Array]) -> list[tuple[int, pa.Array]]:
    first_rows = [0]
    for chunk in chunks[:-1]:
        first_rows.append(first_rows[-1] + len(chunk))
    return list(zip(first_rows, chunks))


def _locate_bad_message(dataset: str, column: str, first_row: int, conversations: pa.ListArray) -> None:
    """Raise for the first bad message of these conversations, if there is one."""
    messages = _messages(conversations)
    roles, contents = messages.field("role"), messages.field("content")
    if messages.null_count:
        index, why = _first(messages.is_null()), "is null, and a message must be a {role, content}"
    elif contents.null_count:
        index, why = _first(contents.is_null()), "has no content"
    elif (index := _first_outside(roles, ROLES)) >= 0:
        why = f"has role {roles[index].as_py()!r}; allowed: {', '.join(ROLES)}"
    else:
        return
    parents = pc.list_parent_indices(conversations)
    row = parents[index].as_py()
    turn = index - pc.index(parents, row).as_py()
    raise SchemaError(f"{dataset}.{column}: row {first_row + row}, message {turn} {why}")


def _table_from_rows(dataset: str, schema: pa.Schema, rows: list[Mapping[str, Any]]) -> pa.Table:
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise SchemaError(f"{dataset}: row {index} is a {type(row).__name__}, expected a mapping of columns")
    _check_columns(dataset, schema, {key for row in rows for key in row})
    arrays = [_column_from_rows(dataset, field, rows) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _table_from_arrow(dataset: str, schema: pa.Schema, table: pa.Table) -> pa.Table:
    if table.schema.equals(schema, check_metadata=False):
        return table  # the fast path: writers that build the exact schema pay nothing
    _check_columns(dataset, schema, table.column_names)
    arrays = []
    for field in schema:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        try:
            arrays.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise SchemaError(f"{dataset}.{field.name}: cannot cast {column.type} to {field.type}: {exc}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def conform(dataset: str, rows_or_table: Any) -> pa.Table:
    """Check a batch against its dataset's schema and return it as an Arrow table of exactly that schema.

    Accepts a list of dicts, an Arrow table or a polars DataFrame. Nullable columns that are
    absent are filled with nulls; unknown columns, missing required columns, nulls in required
    columns and values of the wrong type raise SchemaError naming dataset, column and row.
    """
    schema = SCHEMAS[check_dataset_name(dataset)]
    data = rows_or_table
    if hasattr(data, "to_arrow") and not isinstance(data, pa.Table):  # polars DataFrame
        data = data.to_arrow()
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        table = _table_from_arrow(dataset, schema, data)
    elif isinstance(data, list):
        table = _table_from_rows(dataset, schema, data)
    else:
        raise SchemaError(f"{dataset}: expected a list of rows, an Arrow table or a polars frame, got {type(data).__name__}")
    _check_nulls(dataset, table)
    _check_choices(dataset, table)
    _check_conversations(dataset, table)
    return table


def empty_table(dataset: str) -> pa.Table:
    return SCHEMAS[check_dataset_name(dataset)].empty_table()
