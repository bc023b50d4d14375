"""The preferences stage end to end over a real OpenAI-compatible server on loopback whose answers
depend on what is asked: half the responses of each prompt are right (marked GOOD), half wrong; the
attribute grader and the pairwise judge read the text they are shown. Every judge decides the
prompts it is for, the datasets land through their gates, and the catalog explains every pair."""

import asyncio
import json
import re

import pytest

from benchmarks.servers.fake_openai import FakeOpenAIServer
from flows.config import parse_config
from flows.preferences import preferences_flow
from tasks.prompts.common import stable_seed
from tests.flows.published import publish_prompts

RUN_DATE = "2026-11-20"
SEED = 5
K = 4
GOOD = {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2}
BAD = {"helpfulness": 1, "correctness": 1, "coherence": 1, "complexity": 1, "verbosity": 1}

PROMPTS = [
    ("m1", "seed", "Natalia sold 48 clips in April and half as many in May. How many in all?", "72", None),
    ("m2", "math", "What is 36 times 2?", "72", None),
    ("i1", "instruction_following", "Describe a lighthouse. Do not use any commas.", None, ["punctuation:no_comma"]),
    ("o1", "open_qa", "Why do tides happen?", None, None),
    ("o2", "open_qa", "How do I keep basil fresh?", None, None),
]


def seed_index() -> dict[int, int]:
    """Response seed -> response index: the server answers indices 0 and 1 well, 2 and 3 badly."""
    return {stable_seed(SEED, "response", pid, i): i for pid, *_ in PROMPTS for i in range(K)}


def answer_for(seeds: dict[int, int]):
    def answer(body, index):
        text = body["messages"][-1]["content"]
        if "=== Reply A ===" in text:  # the pairwise judge: name the reply marked GOOD
            reply_a = text.split("=== Reply A ===")[1].split("=== Reply B ===")[0]
            return "A" if "GOOD" in reply_a else "B"
        if "Give the reply five grades" in text:  # the attribute grader of the llm-judge reward
            reply = text.split("The reply to grade:")[1]
            return json.dumps(GOOD if "GOOD" in reply.split(">>>")[0] else BAD)
        question = body["messages"][-1]["content"].rstrip("?.").replace(",", "")
        if seeds[body["seed"]] < 2:
            return f"GOOD reply to {question} in plain words and the answer is 72"
        return f"bad reply to {question}, with commas, and the answer is 71"
    return answer


@pytest.fixture
def server():
    with FakeOpenAIServer(latency_s=0.005, answer=answer_for(seed_index())) as running:
        yield running


def publish(config):
    return publish_prompts(config, [
        {"id": pid, "task_type": task, "messages": [{"role": "user", "content": text}], "reference_answer": ref,
         "instruction_ids": ids, "instruction_kwargs": json.dumps([{}]) if ids else None}
        for pid, task, text, ref, ids in PROMPTS], RUN_DATE)


def config(tmp_path, base_url, **preferences):
    return parse_config({
        "name": "pref", "seed": SEED,
        "lake": {"root": str(tmp_path / "lake")},
        "models": {
            "served": {"backend": "openai", "base_url": base_url, "model": "fake", "concurrency": 16},
            "grader": {"kind": "reward", "backend": "llm-judge", "judge": "served"},
        },
        "prompts": {"enabled": False},
        "preferences": {
            "enabled": True, "responses_per_prompt": K, "generators": [{"model": "served"}],
            "reward": "grader", "judges": ["ground_truth", "verifier", "reward_model", "llm_judge"],
            "llm_judge": {"model": "served"}, "batch_size": 2, **preferences,
        },
        # best-of-n rows of different prompts share most of their (scripted) answer text
        "quality": {"dialogues": {"near_dedup": False}},
    })


def test_every_judge_decides_its_prompts_and_every_pair_explains_itself(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url, calibration={"trust_anyway": ["reward_model", "llm_judge"]})
    catalog = publish(cfg)
    summary = asyncio.run(preferences_flow(cfg, RUN_DATE))
    assert all(b["state"] == "published" for b in summary["batches"]), summary["batches"]

    responses = catalog.query("SELECT prompt_id, count(*) AS n, count(reward) AS scored FROM responses GROUP BY ALL")
    assert {r["prompt_id"]: (r["n"], r["scored"]) for r in responses.to_pylist()} == {p[0]: (K, K) for p in PROMPTS}

    pairs = {r["prompt_id"]: r for r in catalog.query("SELECT * FROM preferences").to_pylist()}
    assert {pid: p["judge"] for pid, p in pairs.items()} == {
        "m1": "ground_truth", "m2": "ground_truth", "i1": "verifier", "o1": "reward_model", "o2": "reward_model"}
    for pair in pairs.values():
        assert "GOOD" in pair["chosen"][0]["content"] and "bad" in pair["rejected"][0]["content"]
    assert pairs["m1"]["reference_answer"] == "72"
    assert (pairs["m1"]["chosen_answer"], pairs["m1"]["rejected_answer"]) == ("72", "71")
    assert pairs["i1"]["chosen_checks"] == [{"instruction_id": "punctuation:no_comma", "followed": True}]
    assert pairs["i1"]["rejected_checks"] == [{"instruction_id": "punctuation:no_comma", "followed": False}]
    assert pairs["o1"]["margin"] == pytest.approx(pairs["o1"]["chosen_reward"] - pairs["o1"]["rejected_reward"])
    assert pairs["o1"]["chosen_attributes"]["helpfulness"] == 4

    judges = {r["judge"]: r for r in catalog.query("SELECT * FROM judges").to_pylist()}
    assert judges["llm_judge"]["position_bias_rate"] == 0.0
    assert judges["ground_truth"]["agreement_with_reward"] == 1.0 and judges["ground_truth"]["agreement_pairs"] == 2
    assert judges["llm_judge"]["agreement_pairs"] == 5  # it read every prompt, and agreed on all
    assert "trust_anyway" in judges["reward_model"]["trust_reason"]

    best = catalog.query("SELECT prompt_id, source, messages, turn_rewards FROM dialogues ORDER BY prompt_id")
    best = best.to_pylist()
    assert [b["prompt_id"] for b in best] == sorted(p[0] for p in PROMPTS)
    assert all(b["source"] == "best_of_n" and "GOOD" in b["messages"][-1]["content"] for b in best)

    usage = catalog.query("SELECT run_id, requests FROM usage").to_pylist()
    judge_requests = 2 * len(PROMPTS)
    calibration = sum("Give the reply five grades" in b["messages"][-1]["content"] for b in server.bodies) - len(PROMPTS) * K
    assert sum(u["requests"] for u in usage) >= len(PROMPTS) * K + judge_requests
    assert {u["run_id"] for u in usage} == {summary["run_id"]}
    assert calibration > 0  # the reward was calibrated before it ranked anything

    # a rerun of the same night: the same batches, nothing twice
    asyncio.run(preferences_flow(cfg, RUN_DATE))
    again = catalog.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM preferences").to_pylist()[0]
    assert again == {"n": len(PROMPTS), "ids": len(PROMPTS)}


def test_judges_below_their_calibration_decide_nothing(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)  # the fake grader ties on every calibration pair
    catalog = publish(cfg)
    summary = asyncio.run(preferences_flow(cfg, RUN_DATE))
    assert summary["trust"]["reward_model"]["trusted"] is False
    assert "decides no pairs" in summary["trust"]["reward_model"]["reason"]
    judged = {r["prompt_id"]: r["judge"] for r in catalog.query("SELECT prompt_id, judge FROM preferences").to_pylist()}
    assert judged == {"m1": "ground_truth", "m2": "ground_truth", "i1": "verifier"}  # code judges only
    drops = catalog.query("SELECT reason, sum(count) AS n FROM drops WHERE stage = 'preferences' "
                          "AND step LIKE 'judges-%' GROUP BY ALL").to_pylist()
    assert {d["reason"]: d["n"] for d in drops} == {"no_judge_decided": 2}
    assert catalog.query("SELECT count(*) AS n FROM dialogues").to_pylist()[0]["n"] == 0  # no untrusted ranking
    assert re.search(r"calibration pairs", catalog.query("SELECT trust_reason FROM judges WHERE judge = 'reward_model'")
                     .to_pylist()[0]["trust_reason"])


def test_a_target_of_n_pairs_ends_with_exactly_n_though_the_gate_drops_some(tmp_path, server, prefect_harness):
    """Batches of two prompts, one at a time: the gate drops the first batch's pairs (their prompts are
    too short for it), so later batches make up for them, and the last lands only the one pair missing."""
    cfg = config(tmp_path, server.base_url, calibration={"trust_anyway": ["reward_model", "llm_judge"]},
                 batches_in_flight=1, target={"rows": 3}, best_of_n={"enabled": False})
    cfg.quality.preferences.min_text_chars = 20
    cfg.quality.preferences.min_acceptance_rate = 0.0
    texts = ["Short one?", "Short two?"] + [f"Why does the thing number {i} work that way?" for i in range(6)]
    prompts = [{"id": f"t{i}", "task_type": "open_qa", "messages": [{"role": "user", "content": t}]}
               for i, t in enumerate(texts)]
    response_seeds = {stable_seed(SEED, "response", p["id"], i): i for p in prompts for i in range(K)}
    server.answer = answer_for(response_seeds)
    catalog = publish_prompts(cfg, prompts, RUN_DATE)
    summary = asyncio.run(preferences_flow(cfg, RUN_DATE))

    assert summary["ended_by"] == "target"
    pairs = catalog.query("SELECT prompt_id FROM preferences ORDER BY prompt_id").column("prompt_id").to_pylist()
    assert len(pairs) == 3 and not {"t0", "t1"} & set(pairs)
    ledger = {r["reason"]: r["n"] for r in catalog.query(
        "SELECT reason, sum(count)::INT AS n FROM drops WHERE stage = 'preferences' GROUP BY ALL").to_pylist()}
    gate_dropped = sum(o["rows_in"] - o["rows_out"] for o in summary["batches"] if o["dataset"] == "preferences")
    assert gate_dropped == 2 and ledger.get("past_target") == 1  # the third batch's second pair: not landed
    asked = {b["seed"] for b in server.bodies if b.get("seed") in response_seeds}
    answered = {p["id"] for p in prompts for i in range(K) if stable_seed(SEED, "response", p["id"], i) in asked}
    assert answered == {"t0", "t1", "t2", "t3", "t4", "t5"}  # the fourth batch never started
