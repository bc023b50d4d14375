"""The `logprob` reward backend: batching mechanics on the tiny model, scores and calibration on
the embedded SmolLM2 (slow), signal rules and the registry wiring."""

from __future__ import annotations

import asyncio
import math

import pytest

from engines.config import ModelSpec
from engines.logprob_judge import LogprobJudgeRewardEngine
from engines.logprob_signals import Reading, attributes, false_arithmetic, repetition
from engines.tiny import build_tiny_chat_model
from engines.types import HELPSTEER2_ATTRIBUTES, RewardEngine, score_sync


def convo(question: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


CONVERSATIONS = [
    convo("What is the capital of France?", "The capital of France is Paris."),
    convo("How do I boil an egg?", "Put it in boiling water for nine minutes, then cool it in cold water."),
    convo("Name a colour.", "Blue."),
    convo("Why is the sky blue?", ""),
    convo("What is 6 times 7?", "6 x 7 = 42, so the answer is 42, a number many people like a lot."),
]


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-5)


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    folder = build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))
    spec = ModelSpec(kind="reward", backend="logprob", model=str(folder), batch_size=3, dtype="float32")
    return LogprobJudgeRewardEngine("tiny-lp", spec)


def test_tiny_batched_equals_one_at_a_time(tiny_engine):
    """Padding done right: sorted, chunked, left-padded prefixes with a shared cache read the
    same numbers as each conversation alone."""
    batched, _ = tiny_engine.reader.read(CONVERSATIONS)
    for conversation, together in zip(CONVERSATIONS, batched):
        [alone], _ = tiny_engine.reader.read([conversation])
        assert set(alone.rubric) == set(HELPSTEER2_ATTRIBUTES)
        for name in HELPSTEER2_ATTRIBUTES:
            assert close(alone.rubric[name], together.rubric[name]), name
        assert len(alone.cond_logprobs) == len(together.cond_logprobs) > 0
        assert all(close(a, b) for a, b in zip(alone.cond_logprobs, together.cond_logprobs))
        assert all(close(a, b) for a, b in zip(alone.uncond_logprobs, together.uncond_logprobs))


def test_tiny_scores_every_conversation_or_says_why(tiny_engine):
    results = score_sync(tiny_engine, [*CONVERSATIONS, [{"role": "user", "content": "no reply"}]])
    assert isinstance(tiny_engine, RewardEngine) and tiny_engine.backend == "logprob"
    for result in results[:-1]:
        assert result.ok and set(result.attributes) == set(HELPSTEER2_ATTRIBUTES)
        assert all(0.0 <= v <= 4.0 for v in result.attributes.values())
        assert not math.isnan(result.reward)
    assert "must end with an assistant turn" in results[-1].error


def test_signal_rules():
    reading = Reading(rubric={a: 9.0 for a in HELPSTEER2_ATTRIBUTES}, cond_logprobs=[], uncond_logprobs=[])
    assert attributes(reading, "   ") == {a: 0.0 for a in HELPSTEER2_ATTRIBUTES}  # empty: 0 by rule
    graded = attributes(reading, "some words here")  # no scored tokens: q = 0, rubric clamped to 4
    assert all(0.0 <= v <= 4.0 for v in graded.values())
    assert repetition("go go go go go go go") > 0.7 and repetition("one two three four") == 0.0
    assert false_arithmetic("7 × 4 = 28 and 28 + 32 = 60") == 0
    assert false_arithmetic("8 × 4 = 42") == 1


def test_registry_builds_logprob_without_a_judge(monkeypatch):
    from engines import registry

    spec = ModelSpec(kind="reward", backend="logprob")
    engine = registry.build_reward_engine("lp", spec, {"lp": spec})
    assert isinstance(engine, LogprobJudgeRewardEngine) and engine.backend == "logprob"
    with pytest.raises(ValueError, match="allowed"):
        ModelSpec(kind="chat", backend="logprob")


def test_registry_reuses_the_judge_chat_engine(tmp_path):
    from engines import registry

    folder = build_tiny_chat_model(tmp_path / "chat")
    models = {
        "chat": ModelSpec(kind="chat", model=str(folder)),
        "lp": ModelSpec(kind="reward", backend="logprob", judge="chat"),
    }
    try:
        reward = registry.get_reward_engine("lp", models)
        assert reward.chat_engine is registry.get_chat_engine("chat", models)
    finally:
        registry.close_all()


@pytest.fixture(scope="module")
def embedded_engine():
    from engines.embedded import embedded_model_dir

    embedded_model_dir()  # converts the GGUF once (~20 s) on a fresh cache
    return LogprobJudgeRewardEngine("lp", ModelSpec(kind="reward", backend="logprob"))


@pytest.mark.slow
def test_embedded_five_scores_and_empty_is_lowest(embedded_engine):
    results = score_sync(embedded_engine, CONVERSATIONS)
    for result in results:
        assert result.ok and set(result.attributes) == set(HELPSTEER2_ATTRIBUTES)
        assert all(0.0 <= v <= 4.0 for v in result.attributes.values())
    empty = results[3].reward
    assert all(empty < r.reward for i, r in enumerate(results) if i != 3)


@pytest.mark.slow
def test_embedded_batched_equals_single():
    spec = ModelSpec(kind="reward", backend="logprob", dtype="float32", batch_size=4)
    engine = LogprobJudgeRewardEngine("lp32", spec)
    batched = score_sync(engine, CONVERSATIONS)
    for conversation, together in zip(CONVERSATIONS, batched):
        [alone] = score_sync(engine, [conversation])
        assert close(alone.reward, together.reward, rel=1e-3)


# Measured on the shipped set with the embedded model (bf16): 0.779 overall, 1.0 easy negatives.
@pytest.mark.slow
def test_embedded_calibration_holds(embedded_engine):
    from tasks.calibration.evaluate import evaluate_reward, load_pairs, shipped_pairs_path

    report = asyncio.run(evaluate_reward(embedded_engine, load_pairs(shipped_pairs_path()), "logprob"))
    assert report.accuracy >= 0.72, report
    assert report.per_subset["easy_negatives"]["accuracy"] >= 0.9, report
    print(report.to_dict())
