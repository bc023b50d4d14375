"""Reading user-supplied tables (seed prompts, closed-QA documents) before any model is called.

A source is a Parquet, JSONL or CSV file, or a folder written by Hugging Face `datasets`'
`save_to_disk`. The format comes from the path; the columns the config names are checked
against the columns the file has, so a typo fails at once with the file, the config field and
the allowed values in one message.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# save_to_disk writes state.json + dataset_info.json for a Dataset, dataset_dict.json for a DatasetDict.
HF_DATASET_MARKERS = ("state.json", "dataset_info.json")
HF_DICT_MARKER = "dataset_dict.json"
SUPPORTED_FORMATS = "Parquet (.parquet, .pq), JSONL (.jsonl, .ndjson), CSV (.csv), a Hugging Face datasets folder"
TEXT_DTYPES = (pl.String, pl.Categorical, pl.Enum, pl.Null)


class SeedError(ValueError):
    """A seed or document source that cannot be used; the message names file, config field and allowed values."""


def table_format(path: Path, field: str, extra_formats: str = "") -> str:
    """'parquet' | 'jsonl' | 'csv' | 'hf', from the suffix or the files `save_to_disk` leaves in a folder."""
    allowed = f"{SUPPORTED_FORMATS}{extra_formats}"
    if not path.exists():
        raise SeedError(f"{field}.path: {path} does not exist; expected one of: {allowed}")
    if path.is_dir():
        if any((path / marker).is_file() for marker in (*HF_DATASET_MARKERS, HF_DICT_MARKER)):
            return "hf"
        raise SeedError(
            f"{field}.path: {path} is a folder without {', '.join((*HF_DATASET_MARKERS, HF_DICT_MARKER))}, "
            f"so not a Hugging Face datasets folder; expected one of: {allowed}"
        )
    fmt = TABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        suffix = path.suffix or "(no suffix)"
        raise SeedError(f"{field}.path: {path} has an unsupported format {suffix!r}; expected one of: {allowed}")
    return fmt


def _hf_split(path: Path, field: str):
    """The Dataset in a save_to_disk folder: the folder itself, or the 'train' split (or the only one) of a DatasetDict."""
    try:
        import datasets
    except ImportError:  # a dev dependency; the other formats need nothing extra
        raise SeedError(f"{field}.path: {path} is a Hugging Face datasets folder; `pip install datasets` to read it") from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            return loaded["train"]
        if len(splits) == 1:
            return loaded[splits[0]]
        raise SeedError(
            f"{field}.path: {path} holds splits {', '.join(splits)} and no 'train'; "
            f"point path at one split's folder, e.g. {path / splits[0]}"
        )
    return loaded


def _scan(path: Path, fmt: str, field: str) -> pl.LazyFrame:
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "jsonl":
        # The whole file decides the types: a value of another type after row 100 must not fail late.
        return pl.scan_ndjson(path, infer_schema_length=None)
    if fmt == "csv":
        # Every CSV cell stays text: "0042" is a prompt, not a number; flags are parsed later.
        return pl.scan_csv(path, infer_schema=False)
    return pl.from_arrow(_hf_split(path, field).with_format("arrow")[:]).lazy()


def read_columns(
    path: Path, columns: dict[str, str | None], field: str, limit: int | None = None, extra_formats: str = ""
) -> pl.DataFrame:
    """The named columns of a source, renamed to their config field names (`prompt_column` -> 'prompt').

    `columns` maps a config field (e.g. 'prompt_column') to the column it names, or None when unset.
    Raises SeedError for a missing file, an unsupported format, an unreadable file or a missing column;
    `extra_formats` adds to the formats the message lists (documents also take text files).
    """
    fmt = table_format(path, field, extra_formats)
    try:
        frame = _scan(path, fmt, field)
        available = frame.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # ValueError: also datasets' own
        if isinstance(exc, SeedError):
            raise
        raise SeedError(f"{field}.path: cannot read {path} as {fmt}: {exc}") from None
    for name, column in columns.items():
        if column is not None and column not in available:
            raise SeedError(
                f"{path}: {field}.{name} = {column!r} is not a column of this file; "
                f"allowed: {', '.join(map(repr, available)) or '(the file has no columns)'}"
            )
    wanted = {name: column for name, column in columns.items() if column is not None}
    frame = frame.select([pl.col(column).alias(name) for name, column in wanted.items()])
    if limit is not None:
        frame = frame.head(limit)
    try:
        return frame.collect()
    except pl.exceptions.PolarsError as exc:
        raise SeedError(f"{field}.path: cannot read {path} as {fmt}: {exc}") from None


def text_values(frame: pl.DataFrame, name: str, path: Path, field: str, column: str) -> list[str | None]:
    """A column that must hold text (prompts, documents); numbers or lists there are a config mistake."""
    series = frame.get_column(name)
    if series.dtype.base_type() not in TEXT_DTYPES:
        raise SeedError(
            f"{path}: {field}.{name} = {column!r} holds {series.dtype}, not text; "
            f"allowed: a column of strings"
        )
    return series.cast(pl.String).to_list()
