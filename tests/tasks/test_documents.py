"""Closed-QA documents: text files and tables, truncation at boundaries, drops, bad input."""

import json

import datasets
import polars as pl
import pytest

from tasks.prompts.config import ClosedQASettings, DocumentSource
from tasks.prompts.documents import document_id, load_documents, read_documents, truncate_text
from tasks.prompts.sources import SeedError

ARTICLES = [
    "The Nile is the longest river in Africa. It flows north into the Mediterranean Sea.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
]


def write_articles(tmp_path, fmt: str, column: str = "body"):
    data = {column: ARTICLES, "title": ["Nile", "Photosynthesis"]}
    if fmt == "parquet":
        path = tmp_path / "docs.parquet"
        pl.DataFrame(data).write_parquet(path)
    elif fmt == "jsonl":
        path = tmp_path / "docs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in pl.DataFrame(data).to_dicts()))
    elif fmt == "csv":
        path = tmp_path / "docs.csv"
        pl.DataFrame(data).write_csv(path)
    else:
        path = tmp_path / "docs_hf"
        datasets.Dataset.from_dict(data).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_a_text_file_is_one_whole_document(tmp_path, suffix):
    path = tmp_path / f"handbook{suffix}"
    path.write_text("# Leave policy\n\nStaff get 25 days of leave.\n\nUnused days expire in March.\n")
    (doc,) = load_documents([DocumentSource(path=path)])
    assert doc["text"] == "# Leave policy\n\nStaff get 25 days of leave.\n\nUnused days expire in March."
    assert doc["doc_id"] == document_id(doc["text"])
    assert (doc["source"], doc["row"], doc["truncated"]) == (str(path), None, False)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv", "hf"])
def test_a_table_gives_one_document_per_row_of_its_text_column(tmp_path, fmt):
    path = write_articles(tmp_path, fmt)
    docs = load_documents([DocumentSource(path=path, text_column="body")])
    assert [d["text"] for d in docs] == ARTICLES
    assert [d["row"] for d in docs] == [0, 1]
    assert {d["source"] for d in docs} == {str(path)}
    assert len({d["doc_id"] for d in docs}) == 2


def test_text_column_defaults_to_text_and_limit_caps_rows(tmp_path):
    path = write_articles(tmp_path, "parquet", column="text")
    docs = load_documents([DocumentSource(path=path, limit=1)])
    assert [d["text"] for d in docs] == ARTICLES[:1]


def test_long_document_is_cut_at_a_paragraph_and_the_cut_recorded(tmp_path):
    paragraphs = [f"Paragraph {i} says something useful about rivers and seas." for i in range(40)]
    full = "\n\n".join(paragraphs)
    path = tmp_path / "long.txt"
    path.write_text(full)
    (doc,) = load_documents([DocumentSource(path=path)], max_chars=500)
    assert len(doc["text"]) <= 500
    assert doc["text"].endswith("rivers and seas.")  # whole paragraphs only
    assert full.startswith(doc["text"])
    assert len(doc["text"]) > 250  # not cut far earlier than needed
    assert doc["truncated"] is True and doc["original_chars"] == len(full)
    assert doc["doc_id"] == document_id(full)  # the id names the document, not the cut


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("Short enough.", 50, "Short enough."),
        ("Intro line one. Two.\n\nNext part. More words here", 40, "Intro line one. Two."),  # paragraph first
        ("One sentence here. Another sentence that runs past the limit", 30, "One sentence here."),
        ('He said "stop." Then he left the room quickly', 25, 'He said "stop."'),
        ("words without any sentence end go on and on", 20, "words without any"),
        ("Tiny. " + "x" * 100, 40, ("Tiny. " + "x" * 100)[:40]),  # the only boundary is too early: hard cut
        ("A" * 100, 10, "A" * 10),
        ("At the limit.", 13, "At the limit."),
    ],
)
def test_truncate_text_prefers_paragraph_then_sentence_then_word(text, limit, expected):
    assert truncate_text(text, limit) == expected
    assert len(truncate_text(text, limit)) <= limit


def test_empty_and_repeated_documents_are_counted_drops(tmp_path):
    table = tmp_path / "t.jsonl"
    table.write_text("".join(json.dumps({"text": t}) + "\n" for t in [ARTICLES[0], "  ", None, ARTICLES[0] + "\n"]))
    empty_file = tmp_path / "empty.md"
    empty_file.write_text("\n \n")
    copy = tmp_path / "copy.txt"
    copy.write_text(ARTICLES[0])
    result = read_documents([DocumentSource(path=table), DocumentSource(path=empty_file), DocumentSource(path=copy)])
    assert [d["text"] for d in result.rows] == [ARTICLES[0]]
    assert result.drop_counts() == {"empty_document": 3, "duplicate_document": 2}
    assert {"source": str(copy), "row": None} in [d.source for d in result.drops]


def test_settings_carry_the_document_sources_and_limit(tmp_path):
    path = tmp_path / "long.csv"
    pl.DataFrame({"body": [" ".join(f"Sentence number {i} is here." for i in range(20))]}).write_csv(path)
    qa = ClosedQASettings.model_validate({"documents": [{"path": str(path), "text_column": "body"}], "max_document_chars": 200})
    (doc,) = load_documents(qa.documents, qa.max_document_chars)
    assert 150 < len(doc["text"]) <= 200 and doc["text"].endswith("is here.")
    with pytest.raises(ValueError, match="prompt_column"):  # tables name their text column, nothing else
        ClosedQASettings.model_validate({"documents": [{"path": str(path), "prompt_column": "body"}]})


# --- bad input: file, field and allowed values in every message --------------------------------


def test_missing_file_lists_text_files_among_the_formats(tmp_path):
    expected = r"prompts\.closed_qa\.documents\[0\]\.path: .*gone\.txt does not exist.*Parquet.*a text file \(\.txt, \.md\)"
    with pytest.raises(SeedError, match=expected):
        load_documents([DocumentSource(path=tmp_path / "gone.txt")])


def test_unsupported_format_lists_text_files_too(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.7")
    expected = r"documents\[0\]\.path: .*report\.pdf.*'\.pdf'.*CSV \(\.csv\).*a text file \(\.txt, \.md\)"
    with pytest.raises(SeedError, match=expected):
        load_documents([DocumentSource(path=path)])


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv", "hf"])
def test_missing_text_column_names_file_field_and_columns(tmp_path, fmt):
    path = write_articles(tmp_path, fmt)
    with pytest.raises(SeedError) as error:
        load_documents([DocumentSource(path=path, text_column="body"), DocumentSource(path=path)])
    message = str(error.value)
    assert str(path) in message
    assert "prompts.closed_qa.documents[1].text_column = 'text' is not a column" in message
    assert "allowed: 'body', 'title'" in message


def test_non_utf8_text_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(SeedError, match=r"documents\[0\]\.path: .*latin1\.txt is not UTF-8"):
        load_documents([DocumentSource(path=path)])


def test_numeric_text_column_is_refused(tmp_path):
    path = tmp_path / "nums.parquet"
    pl.DataFrame({"text": [1, 2]}).write_parquet(path)
    with pytest.raises(SeedError, match=r"nums\.parquet: .*documents\[0\]\.text_column = 'text' holds Int64, not text"):
        load_documents([DocumentSource(path=path)])
