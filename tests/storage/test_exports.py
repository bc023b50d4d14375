"""Exports read by their real consumers: `datasets` + TRL's data helpers, NeMo-Aligner's fields."""

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage.catalog import Catalog
from storage.config import LakeConfig
from storage.exports import ExportError, export
from storage.lake import Lake
from tests.storage.conftest import dialogue_rows, preference_rows

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture
def catalog(tmp_path):
    config = LakeConfig(root=str(tmp_path / "lake"))
    lake = Lake(config)
    lake.publish(lake.stage_batch("preferences", "2025-01-02", "p-1", preference_rows("p-1", 6)))
    lake.publish(lake.stage_batch("preferences", "2025-01-03", "p-2", preference_rows("p-2", 2, start=50)))
    lake.publish(lake.stage_batch("dialogues", "2025-01-02", "d-1", dialogue_rows("d-1", 2)))
    return Catalog(config, lake)


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "[UNK] <|end|> <|user|> <|assistant|> <|system|> what is be brief".split()
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trl_dpo_loads_with_datasets_and_passes_trl_helpers(catalog, tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    out = tmp_path / "dpo.jsonl"
    assert export(catalog, "preferences", "trl-dpo", out) == 8
    data = load_dataset("json", data_files=str(out), split="train")
    assert data.column_names == ["prompt", "chosen", "rejected"]
    example = data[0]
    assert is_conversational(example)
    text = maybe_apply_chat_template(example, tiny_tokenizer())
    assert text["prompt"] == "<|system|>Be brief.<|end|><|user|>What is 0 + 1?<|end|><|assistant|>"
    assert text["chosen"].startswith("1") and text["rejected"].startswith("2")


def test_filters_by_run_date_and_min_reward(catalog, tmp_path):
    out = tmp_path / "f.jsonl"
    assert export(catalog, "preferences", "trl-dpo", out, run_dates=["2025-01-03"]) == 2
    assert export(catalog, "preferences", "trl-dpo", out, min_reward=4.0) == 4  # odd ids have reward 4
    assert export(catalog, "dialogues", "trl-sft", out, min_reward=3.0) == 1


def test_steerlm_rows_match_nemo_aligner_fields(catalog, tmp_path):
    out = tmp_path / "steerlm.jsonl"
    assert export(catalog, "dialogues", "steerlm", out) == 2
    record = read_jsonl(out)[0]
    assert set(record) == {"system", "conversations", "mask", "type"}
    assert record["mask"] == "User" and record["type"] == "VALUE_TO_TEXT" and isinstance(record["system"], str)
    assert [turn["from"] for turn in record["conversations"]] == ["User", "Assistant", "User", "Assistant"]
    assert all(set(turn) == {"from", "value", "label"} for turn in record["conversations"])
    labels = [turn["label"] for turn in record["conversations"]]
    assert labels == [None, "helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2", None,
                      "helpfulness:3,correctness:4,coherence:4,complexity:2,verbosity:2"]
    assert export(catalog, "preferences", "steerlm", out) == 16  # chosen and rejected, each labelled
    first = read_jsonl(out)[0]
    assert first["system"] == "Be brief."
    assert first["conversations"][-1]["label"] == "helpfulness:4,correctness:4,coherence:4,complexity:1,verbosity:1"


def test_nemo_aligner_dpo_uses_its_chat_tokens(catalog, tmp_path):
    out = tmp_path / "nemo.jsonl"
    export(catalog, "preferences", "nemo-aligner-dpo", out)
    record = read_jsonl(out)[0]
    assert set(record) == {"prompt", "chosen_response", "rejected_response", "chosen_reward", "rejected_reward"}
    assert record["prompt"] == "<extra_id_0>System\nBe brief.\n<extra_id_1>User\nWhat is 0 + 1?\n<extra_id_1>Assistant\n"
    assert record["chosen_response"] == "1\n<extra_id_1>" and record["rejected_response"] == "2\n<extra_id_1>"


def test_openai_chat_and_sharegpt(catalog, tmp_path):
    out = tmp_path / "o.jsonl"
    export(catalog, "dialogues", "openai-chat", out)
    assert [m["role"] for m in read_jsonl(out)[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    export(catalog, "preferences", "sharegpt", out)
    assert [t["from"] for t in read_jsonl(out)[0]["conversations"]] == ["system", "human", "gpt"]


def test_bad_exports_are_refused_and_write_nothing(catalog, tmp_path):
    out = tmp_path / "never.jsonl"
    for dataset, fmt in [("prompts", "trl-dpo"), ("preferences", "csv"), ("../x", "trl-dpo")]:
        with pytest.raises((ExportError, ValueError)):
            export(catalog, dataset, fmt, out)
    assert not out.exists()
    config = tmp_path / "run.yaml"
    config.write_text(f"lake:\n  root: {catalog.lake.root}\n")
    result = CliRunner().invoke(app, ["export", "dialogues", "--format", "trl-dpo", "--out", str(out), "-c", str(config)])
    assert result.exit_code == 1 and "exports preferences" in result.output and not out.exists()
    ok = CliRunner().invoke(app, ["export", "preferences", "-f", "trl-dpo", "-o", str(out), "-c", str(config),
                                  "--run-date", "2025-01-02", "--min-reward", "4"])
    assert ok.exit_code == 0, ok.output
    assert len(read_jsonl(out)) == 3


def test_rows_nemo_aligner_cannot_take_get_a_clear_error_or_leave_keys_out(tmp_path):
    config = LakeConfig(root=str(tmp_path / "lake"))
    lake = Lake(config)
    rows = preference_rows("p-1", 3)
    rows[0].update(chosen_reward=None, rejected_reward=None, judge="ground_truth")  # judged by the answer
    rows[1]["chosen_attributes"] = {**rows[1]["chosen_attributes"], "verbosity": float("nan")}
    lake.publish(lake.stage_batch("preferences", "2025-01-02", "p-1", rows))
    catalog = Catalog(config, lake)
    out = tmp_path / "nemo.jsonl"

    export(catalog, "preferences", "nemo-aligner-dpo", out)
    records = read_jsonl(out)  # ordered by id: pair-0 first
    assert "chosen_reward" not in records[0] and "rejected_reward" not in records[0]  # its default, not null
    assert records[1]["chosen_reward"] == rows[1]["chosen_reward"]
    export(catalog, "preferences", "steerlm", out)
    labels = [turn["label"] for record in read_jsonl(out) for turn in record["conversations"] if turn["label"]]
    assert "helpfulness:4,correctness:4,coherence:4,complexity:1" in labels  # the NaN attribute has no label

    second = preference_rows("p-2", 1, start=10)
    second[0]["prompt"] = [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Late rule"},
                           {"role": "user", "content": "And?"}]
    lake.publish(lake.stage_batch("preferences", "2025-01-02", "p-2", second))
    fresh = tmp_path / "never.jsonl"
    for fmt in ("nemo-aligner-dpo", "steerlm"):
        with pytest.raises(ExportError, match=r"row 'pair-10'.*system message after the first turn"):
            export(catalog, "preferences", fmt, fresh)
    assert not fresh.exists()
    assert export(catalog, "preferences", "trl-dpo", fresh) == 4  # TRL's chat templates take it as it is
