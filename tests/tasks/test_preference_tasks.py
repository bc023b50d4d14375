"""The preferences stage's plain functions: the generator pool, responses in context, scoring
drops, the judge chain and best-of-n."""

import asyncio
import math
from collections import Counter

from engines.scripted import ScriptedChatEngine
from engines.types import RewardResult, Usage
from tasks.llm_step import Drop
from tasks.preferences.config import Generator, PreferencesStage
from tasks.preferences.decide import best_of_n, group_by_prompt, judge_groups
from tasks.preferences.responses import generate_responses, pick_generators, score_responses

TWO_TURN = [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7."},
            {"role": "user", "content": "And an even one?"}]


def test_the_pool_draws_by_weight_and_the_same_way_on_every_rerun():
    pool = [Generator(model="big", weight=3), Generator(model="small", weight=1)]
    drawn = [g.model for p in range(400) for g in pick_generators(f"p{p}", 4, pool, seed=1)]
    share = Counter(drawn)["big"] / len(drawn)
    assert 0.7 < share < 0.8
    assert [g.model for g in pick_generators("p1", 4, pool, 1)] == [g.model for g in pick_generators("p1", 4, pool, 1)]


class Reward:
    model_name, backend = "rm", "test"

    def __init__(self, results):
        self.results, self.usage, self.seen = results, Usage(), []

    async def score(self, conversations):
        self.seen += conversations
        return self.results[: len(conversations)]


def test_multi_turn_prompts_are_answered_in_context_and_bad_answers_are_drops():
    answers = iter(["", "a real answer", RuntimeError("server down"), "another answer"])
    engine = ScriptedChatEngine(lambda request: next(answers))
    stage = PreferencesStage(responses_per_prompt=4, generators=[Generator(model="m")])
    out = asyncio.run(generate_responses(lambda name: engine, [{"id": "p", "messages": TWO_TURN}], stage, seed=0))
    assert all(request.messages == TWO_TURN for request in engine.requests)  # the whole history, every time
    assert [r["response"][0]["content"] for r in out.rows] == ["a real answer", "another answer"]
    assert {d.reason.split(":")[0] for d in out.drops} == {"empty_response", "engine_error"}
    assert all(r["finish_reason"] == "stop" and r["model"] == "scripted" for r in out.rows)


def test_a_failed_or_non_finite_score_is_a_drop_never_a_default():
    rows = [{"id": f"r{i}", "prompt_id": "p", "model": "m", "prompt": TWO_TURN,
             "response": [{"role": "assistant", "content": f"answer {i}"}]} for i in range(3)]
    good = {"helpfulness": 3.0, "correctness": 3.0, "coherence": 3.0, "complexity": 1.0, "verbosity": 1.0}
    engine = Reward([RewardResult(good, 2.5), RewardResult(error="boom"),
                     RewardResult({**good, "correctness": math.nan}, 2.0)])
    out = asyncio.run(score_responses(engine, rows))
    assert [r["id"] for r in out.rows] == ["r0"] and out.rows[0]["reward"] == 2.5
    assert sorted(d.reason for d in out.drops) == ["reward_error: boom", "reward_not_finite"]
    assert engine.seen[0][-1] == {"role": "assistant", "content": "answer 0"}  # scored in context


def response(rid, reward, text="plain answer", finish="stop", **extra):
    return {"id": rid, "prompt_id": "p", "response_index": int(rid[-1]), "prompt": TWO_TURN, "model": "m",
            "response": [{"role": "assistant", "content": text}], "finish_reason": finish, "reward": reward,
            "attributes": {"helpfulness": reward}, **extra}


def test_the_first_judge_that_does_not_pass_makes_the_pair():
    group = [response("r0", 3.0), response("r1", 1.0)]
    stage = PreferencesStage(judges=["ground_truth", "reward_model", "llm_judge"], min_margin=0.5)
    always_a = ScriptedChatEngine(lambda request: "A")
    judged = asyncio.run(judge_groups(group_by_prompt(group), stage, ["ground_truth", "reward_model", "llm_judge"],
                                      always_a, "rm", seed=0))
    assert [p.judge for p in judged.pairs] == ["reward_model"]  # ground truth passed: no reference
    assert isinstance(judged.decisions["p"]["llm_judge"], Drop)  # asked anyway, for the report
    alone = PreferencesStage(judges=["llm_judge"])
    judged = asyncio.run(judge_groups(group_by_prompt(group), alone, ["llm_judge"], always_a, "rm", seed=0))
    assert judged.pairs == [] and [d.reason for d in judged.drops] == ["judge_position_bias"]


def test_an_untrusted_judge_is_not_asked():
    group = [response("r0", 3.0), response("r1", 1.0)]
    judged = asyncio.run(judge_groups(group_by_prompt(group), PreferencesStage(), ["ground_truth", "verifier"],
                                      None, "rm", seed=0))
    assert judged.pairs == [] and set(judged.decisions["p"]) == {"ground_truth", "verifier"}
    assert judged.drops[0].reason == "no_judge_decided" and "no_reference" in judged.drops[0].raw


def test_best_of_n_takes_the_best_correct_untruncated_response_above_the_threshold():
    math_group = [response("r0", 3.9, "the answer is 71", reference_answer="72"),
                  response("r1", 3.0, "the answer is 72", reference_answer="72"),
                  response("r2", 3.5, "the answer is 72 but", finish="length", reference_answer="72")]
    best = best_of_n(math_group, min_reward=2.0)
    assert best["messages"][-1]["content"] == "the answer is 72" and best["source"] == "best_of_n"
    assert best["turn_rewards"] == [3.0] and best["messages"][:-1] == TWO_TURN
    assert best_of_n(math_group, min_reward=3.2) is None  # the only right answer is below it
    followed = [response("r0", 3.9, "one, two", instruction_ids=["punctuation:no_comma"], instruction_kwargs="[{}]"),
                response("r1", 2.0, "one two", instruction_ids=["punctuation:no_comma"], instruction_kwargs="[{}]")]
    assert best_of_n(followed, None)["messages"][-1]["content"] == "one two"
