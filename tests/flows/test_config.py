"""Run configs: good files load, each kind of bad file names the field, the value and what is allowed."""

import textwrap

import pytest

from flows.config import DEFAULT_MODEL, ConfigError, load_config, parse_config


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_no_config_means_embedded_default_model():
    cfg = load_config(None)
    assert cfg.models[DEFAULT_MODEL].backend == "transformers"
    assert cfg.models[DEFAULT_MODEL].model is None  # the embedded SmolLM2
    assert cfg.prompts.generator == DEFAULT_MODEL


def test_good_file_loads_every_section(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
            name: nightly
            models:
              big:
                backend: openai
                base_url: http://127.0.0.1:8000/v1
                model: meta/llama
                concurrency: 32
                sampling: {temperature: 0.2, max_tokens: 512}
              rm:
                kind: reward
                backend: llm-judge
                judge: big
            lake: {root: s3://bucket/sdg, storage_options: {endpoint_url: "http://127.0.0.1:5000"}}
            prompts: {generator: big, max_tokens: 256}
            dialogues: {enabled: true, assistant: {model: big}, reward: rm}
            """,
        )
    )
    assert cfg.models["big"].concurrency == 32
    assert cfg.models["big"].sampling.temperature == 0.2
    assert cfg.models["big"].sampling.top_p == 0.95  # untouched defaults survive
    assert cfg.models["rm"].judge == "big"
    assert cfg.lake.root == "s3://bucket/sdg"
    assert cfg.prompts.generator == "big" and cfg.dialogues.user.model == "big"  # the user side defaults to the assistant's
    assert DEFAULT_MODEL in cfg.models


def test_fingerprint_is_stable_and_sensitive():
    a = parse_config({"seed": 1})
    assert a.fingerprint() == parse_config({"seed": 1}).fingerprint()
    assert a.fingerprint() != parse_config({"seed": 2}).fingerprint()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"modles": {}}, ["modles", "unknown field"]),
        ({"models": {"m": {"backend": "tgi"}}}, ["models.m.backend", "'tgi'", "'openai'", "'vllm'"]),
        ({"models": {"m": {"backend": "openai", "model": "x"}}}, ["models.m", "base_url"]),
        ({"models": {"m": {"kind": "chat", "backend": "nim", "model": "x", "base_url": "http://h/v1"}}},
         ["cannot serve kind 'chat'", "allowed: transformers, openai, vllm"]),
        ({"models": {"m": {"concurrency": 0}}}, ["models.m.concurrency", "greater than or equal to 1", "got 0"]),
        ({"models": {"m": {"sampling": {"temperature": "hot"}}}}, ["models.m.sampling.temperature", "'hot'"]),
        ({"models": {"m": {"kind": "reward", "reward_weights": {"kindness": 1}}}}, ["kindness", "helpfulness"]),
        ({"prompts": {"generator": "ghost"}}, ["prompts.generator", "'ghost'", "chat models: default"]),
        ({"quickstart": {"generator": "default"}}, ["quickstart", "unknown field"]),
        ({"preferences": {"enabled": True, "generators": [{"model": "ghost"}]}},
         ["preferences.generators.0.model", "'ghost'", "chat models: default"]),
        ({"preferences": {"enabled": True, "reward": "default"}},
         ["preferences.reward", "needs a reward model", "'default' is a chat model", "reward models: (none)"]),
        ({"models": {"rm": {"kind": "reward", "backend": "logprob"}},
          "preferences": {"enabled": True, "judges": ["llm_judge"], "llm_judge": {"model": "rm"}}},
         ["preferences.llm_judge.model", "needs a chat model", "chat models: default"]),
        ({"preferences": {"judges": ["oracle"]}}, ["preferences.judges.0", "'ground_truth'", "'llm_judge'"]),
        ({"preferences": {"responses_per_prompt": 1}}, ["preferences.responses_per_prompt", "greater than or equal to 2"]),
        ({"models": {"r": {"kind": "reward", "backend": "llm-judge"}}}, ["needs judge"]),
        ({"name": "bad name/../x"}, ["name", "pattern"]),
    ],
)
def test_bad_config_names_field_value_and_allowed(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "run.yaml")
    message = str(err.value)
    assert message.startswith("run.yaml:")
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"


def test_bad_yaml_and_missing_file_and_wrong_top_level(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "models: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
