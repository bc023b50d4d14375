"""The gate on a real local lake: each crafted bad batch is caught by the rule that names it."""

from __future__ import annotations

import copy
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quality.config import GateConfig, QualityConfig
from quality.gate import run_gate
from quality.signature_index import forget_indexes
from storage.lake import Lake
from storage.schemas import SCHEMAS, empty_table
from tests.quality.conftest import RUN_DATE, dialogue_rows, preference_rows, prompt_rows, sentence


def _gate(lake, catalog, dataset, rows, batch="bad", config=None):
    staged = lake.stage_batch(dataset, RUN_DATE, batch, rows)
    return run_gate(lake, catalog, staged, config or QualityConfig(), "run-1")


def _report_on_disk(report) -> dict:
    with open(report.report_url) as handle:
        return json.load(handle)


def _empty_answer(rows):
    rows[2]["chosen"] = [{"role": "assistant", "content": ""}]


def _blank_answer(rows):
    rows[2]["rejected"] = [{"role": "assistant", "content": "  \n "}]


def _score_too_high(rows):
    rows[1]["chosen_attributes"] = {**rows[1]["chosen_attributes"], "helpfulness": 4.5}


def _score_negative(rows):
    rows[1]["rejected_attributes"] = {**rows[1]["rejected_attributes"], "verbosity": -1.0}


def _same_row_twice(rows):
    rows.append(copy.deepcopy(rows[0]))


def _chosen_is_rejected(rows):
    rows[4]["rejected"] = [{"role": "assistant", "content": rows[4]["chosen"][0]["content"].upper() + "!"}]


def _prompt_ends_with_assistant(rows):
    rows[3]["prompt"] = rows[3]["prompt"] + [{"role": "assistant", "content": "Here is my answer."}]


def _chosen_by_user(rows):
    rows[3]["chosen"] = [{"role": "user", "content": "I am not the assistant."}]


def _long_text(rows):
    rows[0]["chosen"] = [{"role": "assistant", "content": "word " * 10_000}]


BAD_PREFERENCES = [
    (_empty_answer, "chosen_text_length"),
    (_blank_answer, "text_min_length"),
    (_score_too_high, "attributes_in_range_high"),
    (_score_negative, "attributes_in_range_low"),
    (_same_row_twice, "id_unique"),
    (_chosen_is_rejected, "chosen_differs_from_rejected"),
    (_prompt_ends_with_assistant, "prompt_role_order"),
    (_chosen_by_user, "chosen_role_order"),
    (_long_text, "text_max_length"),
]


@pytest.mark.parametrize(("spoil", "expectation"), BAD_PREFERENCES, ids=[e for _, e in BAD_PREFERENCES])
def test_bad_preference_batch_is_quarantined_by_the_expectation_that_names_it(lake, catalog, spoil, expectation):
    rows = preference_rows()
    spoil(rows)
    report = _gate(lake, catalog, "preferences", rows, config=QualityConfig(preferences=GateConfig(max_text_chars=20_000)))
    assert report.state == "quarantined"
    assert expectation in report.failed
    on_disk = _report_on_disk(report)
    assert "/quarantine/" in report.report_url and expectation in on_disk["failed"]
    assert [b["batch_id"] for b in lake.list_quarantined()] == ["bad"]
    assert not lake.list_batches("published")
    recorded = catalog.query("SELECT expectation FROM gate_results WHERE batch_id = ? AND NOT success", ["bad"])
    assert expectation in recorded.column("expectation").to_pylist()


def test_dialogue_that_ends_with_the_user_is_quarantined(lake, catalog):
    rows = dialogue_rows()
    rows[5]["messages"] = rows[5]["messages"][:-1]
    report = _gate(lake, catalog, "dialogues", rows)
    assert report.state == "quarantined" and report.failed == ["messages_role_order"]
    assert "b-dlg-5" in str(next(c for c in report.checks if c["expectation"] == "messages_role_order")["details"])


def _loose(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(type_):
        return pa.struct([pa.field(f.name, _loose(f.type)) for f in type_])
    if pa.types.is_list(type_):
        return pa.list_(_loose(type_.value_type))
    return type_


def _stage_past_the_schema(lake, dataset, rows):
    """Land rows the way a writer that skipped stage_batch's schema check would: nulls and all."""
    staged = lake.stage_batch(dataset, RUN_DATE, "bad", prompt_rows() if dataset == "prompts" else preference_rows())
    schema = pa.schema([pa.field(f.name, _loose(f.type)) for f in SCHEMAS[dataset]])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), lake.batch_path("staging", dataset, RUN_DATE, "bad"))
    return staged


def test_null_id_written_past_the_schema_is_caught(lake, catalog):
    rows = prompt_rows()
    rows[1]["id"] = None
    report = run_gate(lake, catalog, _stage_past_the_schema(lake, "prompts", rows), QualityConfig(), "run-1")
    assert report.state == "quarantined" and report.failed == ["id_not_null"]


def test_null_answer_text_written_past_the_schema_is_caught(lake, catalog):
    rows = preference_rows()
    rows[2]["chosen"] = [{"role": "assistant", "content": None}]
    report = run_gate(lake, catalog, _stage_past_the_schema(lake, "preferences", rows), QualityConfig(), "run-1")
    assert report.state == "quarantined" and "chosen_text_not_null" in report.failed


def test_empty_batch_is_quarantined(lake, catalog):
    report = _gate(lake, catalog, "preferences", empty_table("preferences"))
    assert report.state == "quarantined"
    assert "batch_not_empty" in report.failed and report.rows_in == 0


def test_good_batch_is_published_byte_for_byte(lake, catalog):
    staged = lake.stage_batch("preferences", RUN_DATE, "good", preference_rows())
    with open(staged.url, "rb") as handle:
        landed = handle.read()
    report = run_gate(lake, catalog, staged, QualityConfig(), "run-1")
    assert report.state == "published" and report.failed == [] and report.drops == {}
    with open(report.url, "rb") as handle:
        assert handle.read() == landed
    assert os.path.exists(report.report_url) and _report_on_disk(report)["rows_out"] == 12
    assert catalog.query("SELECT state FROM batches WHERE batch_id = 'good'").column(0).to_pylist() == ["published"]


def test_row_level_drops_remove_rows_count_them_and_keep_them_beside(lake, catalog):
    rows = preference_rows(count=20)
    rows[5]["prompt"] = copy.deepcopy(rows[2]["prompt"])  # exact duplicate, another id
    words = rows[3]["prompt"][0]["content"].rstrip("?").split() * 3  # a long prompt, then one word changed
    rows[3]["prompt"][0]["content"] = " ".join(words)
    rows[7]["prompt"][0]["content"] = " ".join(words[:-1] + ["zebra"])
    rows[9]["chosen_reward"] = 0.5
    rows[11]["chosen_attributes"] = {**rows[11]["chosen_attributes"], "correctness": 1.0}
    config = QualityConfig(preferences=GateConfig(min_reward=2.0, min_attributes={"correctness": 2.0}))
    report = _gate(lake, catalog, "preferences", rows, batch="mixed", config=config)
    assert report.state == "published"
    assert report.drops == {"exact_duplicate": 1, "near_duplicate": 1, "low_reward": 1, "low_correctness": 1}
    published = pq.read_table(report.url)
    assert published.num_rows == 16
    assert not {"b-pref-5", "b-pref-7", "b-pref-9", "b-pref-11"} & set(published.column("id").to_pylist())
    dropped = pq.read_table(report.dropped_rows_url).to_pandas().set_index("id")
    assert dropped.loc["b-pref-5", "drop_reason"] == "exact_duplicate" and dropped.loc["b-pref-5", "duplicate_of"] == "b-pref-2"
    assert dropped.loc["b-pref-7", "duplicate_of"] == "b-pref-3"
    table = catalog.query("SELECT reason, count FROM drops WHERE batch_id = 'mixed' AND step = 'gate' ORDER BY reason").to_pylist()
    assert {r["reason"]: r["count"] for r in table} == report.drops


def test_low_acceptance_rate_quarantines(lake, catalog):
    rows = preference_rows()
    for row in rows[:8]:
        row["chosen_reward"] = 0.1
    report = _gate(lake, catalog, "preferences", rows, config=QualityConfig(preferences=GateConfig(min_reward=1.0)))
    assert report.state == "quarantined" and report.failed == ["acceptance_rate"]
    assert report.drops == {"low_reward": 8, "quarantined": 4}


def test_mean_reward_limit_quarantines(lake, catalog):
    config = QualityConfig(preferences=GateConfig(min_mean_reward=3.9))
    report = _gate(lake, catalog, "preferences", preference_rows(), config=config)
    assert report.state == "quarantined" and report.failed == ["mean_reward_of_kept_rows"]


@pytest.fixture(params=["index", "duckdb"])
def probe_path(request, monkeypatch):
    """Both ways of probing published signatures: the in-process index, and DuckDB past its cap."""
    forget_indexes()
    if request.param == "duckdb":
        monkeypatch.setattr("quality.signature_index.MAX_INDEX_KEYS", 0)
    yield request.param
    forget_indexes()


def test_dedup_against_published_survives_a_new_lake_object(lake_config, lake, catalog, probe_path):
    first = preference_rows(batch="first")
    assert _gate(lake, catalog, "preferences", first, batch="first").state == "published"
    forget_indexes()
    fresh = Lake(lake_config)  # as a new process would: nothing carried over in memory
    second = preference_rows(seed=9, batch="second")
    second[0]["prompt"] = copy.deepcopy(first[4]["prompt"])
    words = sentence(random.Random(77), 40)
    first_long = preference_rows(count=1, seed=3, batch="third")
    first_long[0]["prompt"] = [{"role": "user", "content": words}]
    assert _gate(fresh, catalog, "preferences", first_long, batch="third").state == "published"
    second[1]["prompt"] = [{"role": "user", "content": words.replace(words.split()[-1], "zebra", 1)}]
    forget_indexes()
    report = _gate(Lake(lake_config), catalog, "preferences", second, batch="second")
    assert report.state == "published"
    assert report.drops == {"exact_duplicate_of_published": 1, "near_duplicate_of_published": 1}
    # re-gating the same batch id does not count its own earlier signatures as published duplicates
    again = _gate(Lake(lake_config), catalog, "preferences", preference_rows(batch="first"), batch="first")
    assert again.drops == {} and again.state == "published"


def test_topics_and_prompts_pass_with_defaults(lake, catalog):
    assert _gate(lake, catalog, "prompts", prompt_rows(), batch="p").state == "published"
    lineage = {k: v for k, v in prompt_rows(1)[0].items() if k in SCHEMAS["topics"].names and k != "id"}
    topics = [{**lineage, "id": f"t{i}", "topic": sentence(random.Random(i)), "source": "synthetic"} for i in range(3)]
    assert _gate(lake, catalog, "topics", topics, batch="t").state == "published"


def test_prompts_compare_only_within_their_task_type(lake, catalog):
    rows = prompt_rows(count=10)
    base = rows[0]["messages"][0]["content"]
    # an instruction-following prompt repeats its base prompt by design: both stay
    rows[1] = {**rows[1], "task_type": "instruction_following", "messages": [{"role": "user", "content": base}]}
    # the same text twice within one task type is still a duplicate
    rows[2] = {**rows[2], "messages": [{"role": "user", "content": base}]}
    report = _gate(lake, catalog, "prompts", rows, batch="scoped")
    assert report.state == "published" and report.drops == {"exact_duplicate": 1}
    kept = set(pq.read_table(report.url).column("id").to_pylist())
    assert "b-prm-1" in kept and "b-prm-2" not in kept
    assert {m["task_type"]: m["rows"] for m in report.mix} == {"open_qa": 8, "instruction_following": 1}
    # and against published rows, the scope holds too
    later = prompt_rows(count=4, seed=5, batch="later")
    later[0]["messages"] = [{"role": "user", "content": base}]
    later[1] = {**later[1], "task_type": "writing", "messages": [{"role": "user", "content": base}]}
    again = _gate(lake, catalog, "prompts", later, batch="later")
    assert again.drops == {"exact_duplicate_of_published": 1}
