"""The tiny test models: built in seconds, deterministic, loadable like any real checkpoint."""

from __future__ import annotations

import hashlib

import pytest

from engines.tiny import build_tiny_models
from engines.types import HELPSTEER2_ATTRIBUTES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic(tiny, tmp_path):
    again = build_tiny_models(tmp_path)
    for kind in ("chat", "reward"):
        for name in ("model.safetensors", "tokenizer.json"):
            assert _digest(tiny[kind] / name) == _digest(again[kind] / name), (kind, name)


def test_chat_model_loads_with_auto_classes(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny["chat"])
    tokenizer = AutoTokenizer.from_pretrained(tiny["chat"])
    config = model.config
    assert config.num_hidden_layers == 2
    assert config.hidden_size // config.num_attention_heads >= 32  # vLLM CPU kernels need it
    assert getattr(config, "head_dim", 32) >= 32
    assert config.vocab_size == len(tokenizer)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


def test_chat_template_marks_roles_and_generation_prompt(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["chat"])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is seven prime?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.index("<|system|>Be brief.") < text.index("<|user|>Why is seven prime?")
    assert text.endswith("<|assistant|>")
    without = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert not without.endswith("<|assistant|>")
    # Role markers are single special tokens, not spelled out letter by letter.
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|user|>") in ids


@pytest.mark.parametrize("text", ["plain words", "naïve café — 日本語 🚀", "x = [1, 2, 3]\n\tprint(x)"])
def test_tokenizer_round_trips_any_text(tiny, text):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["chat"])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_reward_model_names_the_helpsteer2_attributes(tiny):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny["reward"])
    assert model.config.num_labels == 5
    assert [model.config.id2label[i] for i in range(5)] == list(HELPSTEER2_ATTRIBUTES)
    assert model.config.pad_token_id is not None


def test_cli_builds_both_models(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["models", "tiny", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "noise" in result.output
    assert (tmp_path / "m" / "chat" / "model.safetensors").is_file()
    assert (tmp_path / "m" / "reward" / "model.safetensors").is_file()
