"""Rewards over HTTP: NIM's logprob-token answers, and an LLM judge over a scripted chat engine."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engines.config import ModelSpec
from engines.judge_reward import JUDGE_SCHEMA, LLMJudgeRewardEngine, parse_judge_answer, UnusableJudgeAnswer
from engines.nim_reward import MalformedRewardAnswer, NIMRewardEngine, parse_attribute_tokens
from engines.types import (
    DEFAULT_REWARD_WEIGHTS,
    HELPSTEER2_ATTRIBUTES,
    ChatRequest,
    ChatResult,
    Completion,
    RewardEngine,
    Usage,
    aggregate_reward,
)
from tests.engines.fault_server import FaultServer

pytestmark = pytest.mark.timeout(60)

GOOD_TOKENS = ["helpfulness:3.9", "correctness:3.6", "coherence:4.1", "complexity:1.2", "verbosity:1.5"]
GOOD = {"helpfulness": 3.9, "correctness": 3.6, "coherence": 4.1, "complexity": 1.2, "verbosity": 1.5}


def nim_answer(tokens: list) -> dict:
    content = [{"token": t, "logprob": -0.1, "top_logprobs": []} for t in tokens]
    return {"id": "x", "object": "chat.completion", "model": "nemotron-4-340b-reward",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                         "logprobs": {"content": content}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}


# Scripted by the assistant turn being scored: its text names the token list to answer.
SCRIPTED_TOKENS = {
    "good": GOOD_TOKENS,
    "missing": GOOD_TOKENS[:3],
    "not a number": ["helpfulness:abc", *GOOD_TOKENS[1:]],
    "extra tokens": ["<s>", *GOOD_TOKENS, "unknown:1.0"],
}


def scripted_nim(body: dict) -> dict:
    reply = body["messages"][-1]["content"]
    if reply == "no logprobs":
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}}]}
    return nim_answer(SCRIPTED_TOKENS[reply])


def scored(reply: str) -> list[dict]:
    return [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": reply}]


@pytest.fixture
def nim_server():
    with FaultServer(completion=scripted_nim) as server:
        yield server


def nim_engine(server: FaultServer, **fields) -> NIMRewardEngine:
    fields = {"timeout_s": 0.5, "max_retries": 2, **fields}
    spec = ModelSpec(kind="reward", backend="nim", base_url=server.base_url, model="nvidia/nemotron-4-340b-reward",
                     **fields)
    return NIMRewardEngine("nim-reward", spec, backoff_base_s=0.01)


async def score_and_close(engine, conversations):
    try:
        return await engine.score(conversations)
    finally:
        await engine.aclose()


def test_nim_engine_parses_the_five_attributes_and_aggregates(nim_server):
    engine = nim_engine(nim_server)
    assert isinstance(engine, RewardEngine)
    [result] = asyncio.run(score_and_close(engine, [scored("good")]))
    assert result.ok and result.attributes == GOOD
    assert result.reward == pytest.approx(aggregate_reward(GOOD, DEFAULT_REWARD_WEIGHTS))
    body = nim_server.bodies[0]
    assert body["model"] == "nvidia/nemotron-4-340b-reward" and body["messages"] == scored("good")
    assert engine.usage.requests == 1 and engine.usage.prompt_tokens == 12


def test_nim_engine_uses_the_configured_weights(nim_server):
    engine = nim_engine(nim_server, reward_weights={"helpfulness": 1.0, "verbosity": -1.0})
    [result] = asyncio.run(score_and_close(engine, [scored("good")]))
    assert result.reward == pytest.approx(3.9 - 1.5)


def test_nim_engine_retries_faults_with_the_chat_machinery(nim_server):
    nim_server.script = ["503", "truncated", "reset_before"]
    [result] = asyncio.run(score_and_close(nim_engine(nim_server, max_retries=3), [scored("good")]))
    assert result.ok and result.attributes == GOOD
    assert len(nim_server.actions) == 4


def test_nim_engine_final_error_names_the_server(nim_server):
    nim_server.script = ["500"] * 3
    [result] = asyncio.run(score_and_close(nim_engine(nim_server), [scored("good")]))
    assert nim_server.base_url in result.error and "http 500 after 3 tries" in result.error


def test_malformed_answers_are_errors_and_the_batch_survives(nim_server):
    replies = ["missing", "good", "not a number", "no logprobs", "extra tokens"]
    engine = nim_engine(nim_server)
    results = asyncio.run(score_and_close(engine, [scored(r) for r in replies]))
    by_reply = dict(zip(replies, results, strict=True))
    assert by_reply["good"].ok and by_reply["extra tokens"].attributes == GOOD
    assert "missing attributes ['complexity', 'verbosity']" in by_reply["missing"].error
    assert "helpfulness:abc" in by_reply["not a number"].error
    assert "logprobs" in by_reply["no logprobs"].error
    assert all(r.reward is None for r in (by_reply["missing"], by_reply["no logprobs"]))
    assert engine.usage.errors == 3


def test_nim_engine_needs_an_assistant_turn_to_score(nim_server):
    [result] = asyncio.run(score_and_close(nim_engine(nim_server), [[{"role": "user", "content": "hi"}]]))
    assert "assistant turn" in result.error and nim_server.bodies == []


@pytest.mark.parametrize("garbage", [{}, {"choices": []}, {"choices": [{"logprobs": None}]},
                                     {"choices": [{"logprobs": {"content": "helpfulness:4"}}]},
                                     nim_answer(["helpfulness:nan", *GOOD_TOKENS[1:]]), nim_answer([1, 2, None])])
def test_attribute_token_parser_rejects_garbage(garbage):
    with pytest.raises(MalformedRewardAnswer):
        parse_attribute_tokens(garbage)


class ScriptedChatEngine:
    """A ChatEngine answering with the given texts in turn (None: a failed request)."""

    backend = "scripted"
    model_name = "scripted-judge"

    def __init__(self, answers: list[str | None]) -> None:
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []
        self.usage = Usage()

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        self.requests.extend(requests)
        results = []
        for _ in requests:
            text = self.answers.pop(0)
            if text is None:
                results.append(ChatResult(error="http://judge/v1 model 'x': http 503 after 6 tries"))
            else:
                results.append(ChatResult([Completion(text)], prompt_tokens=50, completion_tokens=20))
        return results

    async def aclose(self) -> None:
        pass


def judge_engine(answers: list[str | None]) -> LLMJudgeRewardEngine:
    spec = ModelSpec(kind="reward", backend="llm-judge", judge="scripted")
    return LLMJudgeRewardEngine("judge-reward", spec, ScriptedChatEngine(answers))


CLEAN = '{"helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 2}'


@pytest.mark.parametrize("answer", [
    CLEAN,
    f"Here are my grades:\n```json\n{CLEAN}\n```\nHope this helps!",
    f"After reading carefully, {CLEAN} is my verdict.",
    CLEAN.replace("3", '"3"'),  # numbers as strings
    '{"note": "draft"} then ' + CLEAN,
])
def test_judge_reads_json_inside_chatter_and_fences(answer):
    engine = judge_engine([answer])
    [result] = asyncio.run(engine.score([scored("Four.")]))
    assert result.ok, result.error
    assert result.attributes == {"helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 2}
    assert result.reward == pytest.approx(aggregate_reward(result.attributes, DEFAULT_REWARD_WEIGHTS))


@pytest.mark.parametrize("answer, reason", [
    ("The answer is pretty good, I'd say four out of five.", "no JSON object"),
    ('{"helpfulness": 3, "correctness": 4}', "no JSON object with all five"),
    (CLEAN.replace("4,", "7,", 1), "outside 0..4"),
    (CLEAN.replace("1,", "-1,"), "outside 0..4"),
    (CLEAN.replace("3", '"three"'), "not a number"),
    (CLEAN.replace("3", "true"), "not a number"),
    ('{"helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": ', "no JSON object"),
    ("", "no JSON object"),
])
def test_unusable_judge_answers_are_errors_with_the_raw_text(answer, reason):
    engine = judge_engine([answer])
    [result] = asyncio.run(engine.score([scored("Four.")]))
    assert not result.ok and result.reward is None and result.attributes == {}
    assert reason in result.error
    assert repr(answer[:300]) in result.error


def test_long_raw_answers_are_truncated_in_the_error():
    [result] = asyncio.run(judge_engine(["blah " * 500]).score([scored("Four.")]))
    assert "..." in result.error and len(result.error) < 500


def test_judge_prompt_request_and_lineage():
    engine = judge_engine([CLEAN, None])
    results = asyncio.run(engine.score([scored("Four."), scored("Five."), [{"role": "user", "content": "hi"}]]))
    assert [r.ok for r in results] == [True, False, False]
    assert "http 503" in results[1].error and "scripted-judge" in results[1].error
    assert "assistant turn" in results[2].error
    first = engine.chat_engine.requests[0]
    prompt = first.messages[0]["content"]
    assert "What is 2+2?" in prompt and "Four." in prompt and "{" in prompt
    assert first.json_schema == JUDGE_SCHEMA and first.temperature == 0.0
    assert len(engine.chat_engine.requests) == 2  # nothing asked for the turn that cannot be scored
    assert engine.template_version == "engines.judge_attributes@2"
    assert engine.usage.requests == 3 and engine.usage.errors == 2 and engine.usage.prompt_tokens == 50


def test_parse_judge_answer_names_every_attribute():
    assert set(parse_judge_answer(CLEAN)) == set(HELPSTEER2_ATTRIBUTES)
    with pytest.raises(UnusableJudgeAnswer):
        parse_judge_answer("[1, 2, 3]")


def test_a_judge_that_parrots_the_prompt_gets_no_grades():
    # Small models often echo their prompt; the template's example must not parse as grades.
    engine = judge_engine([None])
    prompt = engine.request_for(scored("Four.")).messages[0]["content"]
    with pytest.raises(UnusableJudgeAnswer):
        parse_judge_answer(prompt)
