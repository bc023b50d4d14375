"""Seed prompts: real files in every format, column mapping, answers, unsafe flags, drops, bad input."""

import json

import datasets
import polars as pl
import pytest

from storage.schemas import conform
from tasks.prompts.config import SeedSettings, SeedSource
from tasks.prompts.seeds import final_answer, load_seed_prompts, prompt_id, read_seed_prompts
from tasks.prompts.sources import SeedError

GSM8K = {
    "question": ["Tom has 3 apples and buys 4 more. How many now?", "What is 6 times 7?"],
    "answer": ["He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7", "6 * 7 = 42\n#### 42"],
}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_table(tmp_path, fmt: str, data: dict):
    """The same columns written as a real file (or datasets folder) of the given format."""
    frame = pl.DataFrame(data)
    if fmt == "parquet":
        path = tmp_path / "seeds.parquet"
        frame.write_parquet(path)
    elif fmt == "jsonl":
        path = write_jsonl(tmp_path / "seeds.jsonl", frame.to_dicts())
    elif fmt == "csv":
        path = tmp_path / "seeds.csv"
        frame.write_csv(path)
    elif fmt == "hf":
        path = tmp_path / "seeds_hf"
        datasets.Dataset.from_dict(data).save_to_disk(str(path))
    elif fmt == "hf-dict":
        path = tmp_path / "seeds_hf_dict"
        datasets.DatasetDict(
            {"test": datasets.Dataset.from_dict({k: v[:1] for k, v in data.items()}), "train": datasets.Dataset.from_dict(data)}
        ).save_to_disk(str(path))
    return path


def settings(*sources, unsafe="remove"):
    return SeedSettings(sources=list(sources), unsafe=unsafe)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv", "hf", "hf-dict"])
def test_every_format_maps_columns_to_prompt_rows(tmp_path, fmt):
    path = write_table(tmp_path, fmt, {**GSM8K, "other": ["x", "y"]})
    source = SeedSource(path=path, prompt_column="question", reference_column="answer")
    rows, drops = load_seed_prompts(settings(source))
    assert drops == {}
    assert [r["messages"] for r in rows] == [[{"role": "user", "content": q}] for q in GSM8K["question"]]
    assert [r["reference_answer"] for r in rows] == ["7", "42"]  # the DatasetDict gave its 'train' split
    first = rows[0]
    assert first["id"] == prompt_id(GSM8K["question"][0])
    assert (first["task_type"], first["source"], first["topic"], first["subtopic"], first["unsafe"]) == (
        "seed", "seed", None, None, None,
    )
    conform("prompts", [{**r, "run_id": "r", "batch_id": "b", "stage": "prompts", "created_at": 0} for r in rows])


def test_datasetdict_without_train_uses_its_only_split(tmp_path):
    path = tmp_path / "only_test"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"prompt": ["Name a prime number."]})}).save_to_disk(str(path))
    rows, _ = load_seed_prompts(settings(SeedSource(path=path)))
    assert [r["messages"][0]["content"] for r in rows] == ["Name a prime number."]


def test_datasetdict_with_several_splits_and_no_train_is_refused_with_the_splits(tmp_path):
    path = tmp_path / "two_splits"
    one = datasets.Dataset.from_dict({"prompt": ["a question"]})
    datasets.DatasetDict({"test": one, "validation": one}).save_to_disk(str(path))
    with pytest.raises(SeedError, match=r"seeds\.sources\[0\]\.path.*test, validation.*no 'train'"):
        load_seed_prompts(settings(SeedSource(path=path)))


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("a #### b #### 1,000", "1,000"),  # the last marker wins; the equivalence check normalises commas
        ("The area is $\\boxed{\\frac{\\sqrt{3}}{4}}$ square units.", "\\frac{\\sqrt{3}}{4}"),
        ("First \\boxed{1}, corrected: \\boxed{2}", "2"),
        ("42", "42"),
        ("   ", None),
        ("####   ", None),
        (None, None),
    ],
)
def test_final_answer_cuts_reference_solutions(solution, expected):
    assert final_answer(solution) == expected


def test_numeric_reference_column_becomes_text(tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "What is 2+3?", "answer": 5}])
    rows, _ = load_seed_prompts(settings(SeedSource(path=path, reference_column="answer")))
    assert rows[0]["reference_answer"] == "5"


UNSAFE_ROWS = [
    {"prompt": "How do I bake bread?", "flag": False},
    {"prompt": "How do I pick a lock to break in?", "flag": True},
    {"prompt": "Write a haiku about rain.", "flag": None},
]


def test_unsafe_prompts_removed_for_sft_are_counted_drops(tmp_path):
    path = write_jsonl(tmp_path / "safety.jsonl", UNSAFE_ROWS)
    result = read_seed_prompts(settings(SeedSource(path=path, unsafe_column="flag"), unsafe="remove"))
    assert [r["messages"][0]["content"] for r in result.rows] == ["How do I bake bread?", "Write a haiku about rain."]
    assert [r["unsafe"] for r in result.rows] == [False, None]
    assert result.drop_counts() == {"unsafe": 1}
    (drop,) = result.drops
    assert drop.raw == "How do I pick a lock to break in?"
    assert drop.source == {"seed_source": "safety.jsonl", "row": 1}


def test_unsafe_prompts_kept_for_preference_data_carry_their_flag(tmp_path):
    path = write_jsonl(tmp_path / "safety.jsonl", UNSAFE_ROWS)
    rows, drops = load_seed_prompts(settings(SeedSource(path=path, unsafe_column="flag"), unsafe="keep"))
    assert drops == {}
    assert [r["unsafe"] for r in rows] == [False, True, None]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 0], [False, True, False]),
        (["true", "FALSE", " yes "], [True, False, True]),
        (["1", "0", ""], [True, False, None]),
    ],
)
def test_unsafe_flag_accepts_ints_and_words(tmp_path, values, expected):
    records = [{"prompt": f"prompt number {i}", "unsafe": v} for i, v in enumerate(values)]
    source = SeedSource(path=write_jsonl(tmp_path / "f.jsonl", records), unsafe_column="unsafe")
    rows, _ = load_seed_prompts(settings(source, unsafe="keep"))
    assert [r["unsafe"] for r in rows] == expected


def test_csv_flags_are_read_as_words(tmp_path):
    path = tmp_path / "flags.csv"
    path.write_text("prompt,is_unsafe\nTell me a joke,0\nHelp me hurt someone,1\nSay hi,true\n")
    rows, drops = load_seed_prompts(settings(SeedSource(path=path, unsafe_column="is_unsafe")))
    assert [r["messages"][0]["content"] for r in rows] == ["Tell me a joke"]
    assert drops == {"unsafe": 2}


def test_csv_cells_stay_as_written(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("prompt,answer\n12345,007\nRound pi to two places,3.10\n")
    rows, _ = load_seed_prompts(settings(SeedSource(path=path, reference_column="answer")))
    assert [(r["messages"][0]["content"], r["reference_answer"]) for r in rows] == [
        ("12345", "007"),  # a number-looking prompt is still a prompt; answers keep their digits
        ("Round pi to two places", "3.10"),
    ]


def test_empty_and_duplicate_prompts_are_counted_across_sources(tmp_path):
    first = write_jsonl(
        tmp_path / "a.jsonl",
        [{"prompt": "Explain gravity."}, {"prompt": "   "}, {"prompt": None}, {"prompt": "Explain gravity.  "}],
    )
    second = tmp_path / "b.parquet"
    pl.DataFrame({"prompt": ["Explain gravity.", "Define entropy.", ""]}).write_parquet(second)
    result = read_seed_prompts(settings(SeedSource(path=first), SeedSource(path=second)))
    assert [r["messages"][0]["content"] for r in result.rows] == ["Explain gravity.", "Define entropy."]
    assert result.drop_counts() == {"empty_prompt": 3, "duplicate_seed": 2}
    assert {d.source["seed_source"] for d in result.drops if d.reason == "duplicate_seed"} == {"a.jsonl", "b.parquet"}


def test_limit_reads_only_the_first_rows_of_a_source(tmp_path):
    path = tmp_path / "many.parquet"
    pl.DataFrame({"prompt": [f"question {i}" for i in range(50)]}).write_parquet(path)
    rows, _ = load_seed_prompts(settings(SeedSource(path=path, limit=3)))
    assert [r["messages"][0]["content"] for r in rows] == ["question 0", "question 1", "question 2"]


def test_ids_are_deterministic_and_content_based(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "Why is the sky blue?"}])
    again = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "Why is the sky blue?"}])
    (a,), _ = load_seed_prompts(settings(SeedSource(path=path)))
    (b,), _ = load_seed_prompts(settings(SeedSource(path=again)))
    assert a["id"] == b["id"] != prompt_id("Why is the sky green?")


# --- bad input: each error names the file, the config field and what is allowed ---------------


def test_missing_file_names_field_and_formats(tmp_path):
    missing = tmp_path / "nope.parquet"
    expected = r"prompts\.seeds\.sources\[0\]\.path: .*nope\.parquet does not exist.*Parquet.*JSONL.*CSV"
    with pytest.raises(SeedError, match=expected):
        load_seed_prompts(settings(SeedSource(path=missing)))


def test_unsupported_format_names_the_supported_ones(tmp_path):
    path = tmp_path / "seeds.xlsx"
    path.write_bytes(b"not a spreadsheet")
    with pytest.raises(SeedError, match=r"sources\[0\]\.path: .*seeds\.xlsx.*'\.xlsx'.*Parquet \(\.parquet, \.pq\), JSONL"):
        load_seed_prompts(settings(SeedSource(path=path)))


def test_plain_folder_is_not_a_datasets_folder(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(SeedError, match=r"folder without state\.json.*Hugging Face datasets folder"):
        load_seed_prompts(settings(SeedSource(path=tmp_path / "folder")))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv", "hf"])
@pytest.mark.parametrize("field", ["prompt_column", "reference_column", "unsafe_column"])
def test_missing_column_names_file_field_and_the_columns_it_has(tmp_path, fmt, field):
    path = write_table(tmp_path, fmt, GSM8K)
    mapping = {"prompt_column": "question", field: "qestion"}
    ok = SeedSource(path=path, prompt_column="question")
    with pytest.raises(SeedError) as error:
        load_seed_prompts(settings(ok, SeedSource(path=path, **mapping)))
    message = str(error.value)
    assert str(path) in message
    assert f"prompts.seeds.sources[1].{field} = 'qestion' is not a column" in message
    assert "allowed: 'question', 'answer'" in message


def test_bad_unsafe_value_names_row_and_allowed_values(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"p": "fine prompt", "u": "no"}, {"p": "other", "u": "maybe"}])
    expected = r"f\.jsonl: .*sources\[0\]\.unsafe_column = 'u', row 1, has value 'maybe'.*allowed: true/false, 1/0"
    with pytest.raises(SeedError, match=expected):
        load_seed_prompts(settings(SeedSource(path=path, prompt_column="p", unsafe_column="u")))


def test_non_text_prompt_column_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"prompt": "ok", "n": 3}])
    with pytest.raises(SeedError, match=r"n\.jsonl: .*sources\[0\]\.prompt_column = 'n' holds Int64, not text"):
        load_seed_prompts(settings(SeedSource(path=path, prompt_column="n")))


def test_unreadable_file_names_file_and_format(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SeedError, match=r"sources\[0\]\.path: cannot read .*broken\.parquet as parquet"):
        load_seed_prompts(settings(SeedSource(path=path)))


def test_error_in_a_later_source_names_its_index(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "fine"}])
    with pytest.raises(SeedError, match=r"sources\[1\]\.path"):
        read_seed_prompts(settings(SeedSource(path=good), SeedSource(path=tmp_path / "late.csv")))
