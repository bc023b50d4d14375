"""Documents for closed QA: text files (one document each) or tables with one document per row.

A document longer than the limit is cut at a paragraph break, else a sentence end, else a word
boundary near the limit, so the generator never sees half a word; the cut is recorded on the
document (`truncated`, `original_chars`). Empty and repeated documents are drops with a reason.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tasks.llm_step import Drop, Row, StepResult
from tasks.prompts.config import DocumentSource
from tasks.prompts.sources import SeedError, read_columns, text_values

DOCUMENTS_FIELD = "prompts.closed_qa.documents"
TEXT_SUFFIXES = (".txt", ".md")
TEXT_FORMATS = ", a text file (.txt, .md)"
# A cut earlier than this share of the limit throws away too much; fall back to a finer boundary.
MIN_KEEP_SHARE = 0.5
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")


def document_id(text: str) -> str:
    """Deterministic id of a document's full text, the same whatever the truncation limit."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def truncate_text(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars`, at the last paragraph, sentence or word boundary that keeps enough.

    >>> truncate_text("One. Two three.", 100)
    'One. Two three.'
    >>> truncate_text("First paragraph here.\\n\\nSecond one is longer.", 30)
    'First paragraph here.'
    >>> truncate_text("Alpha beta. Gamma delta epsilon", 25)
    'Alpha beta.'
    """
    if len(text) <= max_chars:
        return text
    window = text[: max_chars + 1]  # +1: a boundary right after the limit still counts
    floor = int(max_chars * MIN_KEEP_SHARE)
    paragraph = window.rfind("\n\n")
    if paragraph >= floor:
        return window[:paragraph].rstrip()
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() - 1 <= max_chars]
    if sentence_ends and sentence_ends[-1] >= floor:
        return window[: sentence_ends[-1]].rstrip()
    space = window.rfind(" ")
    if space >= floor:
        return window[:space].rstrip()
    return text[:max_chars]  # one enormous word: a hard cut is the only choice


def _read_text_file(path: Path, field: str) -> list[str]:
    try:
        return [path.read_text(encoding="utf-8")]
    except UnicodeDecodeError as exc:
        raise SeedError(f"{field}.path: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _is_text_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in TEXT_SUFFIXES


def _read_source(source: DocumentSource, field: str) -> list[str | None]:
    if _is_text_file(source.path):
        return _read_text_file(source.path, field)
    frame = read_columns(source.path, {"text_column": source.text_column}, field, source.limit, TEXT_FORMATS)
    return text_values(frame, "text_column", source.path, field, source.text_column)


def read_documents(sources: list[DocumentSource], max_chars: int = 6000, field: str = DOCUMENTS_FIELD) -> StepResult:
    """Documents as rows {doc_id, text, source, row, truncated, original_chars}, plus the drops.

    Every source is read and checked before the first document is built.
    """
    texts = [(s, _read_source(s, f"{field}[{i}]")) for i, s in enumerate(sources)]
    result, seen = StepResult(), set()
    for source, values in texts:
        is_table = not _is_text_file(source.path)
        for index, value in enumerate(values):
            where = {"source": str(source.path), "row": index if is_table else None}
            full = (value or "").strip()
            if not full:
                result.drops.append(Drop("empty_document", value, where))
                continue
            doc_id = document_id(full)
            if doc_id in seen:
                result.drops.append(Drop("duplicate_document", full, where))
                continue
            seen.add(doc_id)
            text = truncate_text(full, max_chars)
            result.rows.append(
                {"doc_id": doc_id, "text": text, **where, "truncated": text != full, "original_chars": len(full)}
            )
    return result


def load_documents(sources: list[DocumentSource], max_chars: int = 6000) -> list[Row]:
    """The closed-QA documents of the config, each cut to about `max_chars` characters."""
    return read_documents(sources, max_chars).rows
