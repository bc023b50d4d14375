"""The four judges of the preferences stage on crafted groups (no Prefect, no model)."""

import asyncio
import json
import threading

import pytest

from engines.scripted import ScriptedChatEngine
from engines.types import ChatRequest
from tasks.llm_step import Drop
from tasks.preferences.judges.answers import answers_match, extract_final_answer
from tasks.preferences.judges.base import Pair, Pass
from tasks.preferences.judges.ground_truth import grade, judge_ground_truth
from tasks.preferences.judges.llm_judge import Reading, ask_both_orders, judge_llm, parse_verdict, winner
from tasks.preferences.judges.reward_model import judge_reward_model
from tasks.preferences.judges.verifier import checks, judge_verifier

PROMPT = [{"role": "user", "content": "Solve it."}]


def row(rid, text, reward=None, finish="stop", reference=None, ids=None, kwargs=None, index=0):
    return {"id": rid, "prompt_id": "p1", "task_type": "math", "prompt": PROMPT, "response_index": index,
            "response": [{"role": "assistant", "content": text}], "finish_reason": finish, "model": "m",
            "attributes": None, "reward": reward, "reference_answer": reference, "instruction_ids": ids,
            "instruction_kwargs": None if kwargs is None else json.dumps(kwargs)}


# --- answers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{\frac{1}{2}} and", r"\frac{1}{2}"),
    (r"\boxed{1} first, then \boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
    ("Work...\n#### 1,000\n", "1,000"),
    ("So the answer is **42**.", "42"),
    ("Final answer: $0.5$", "0.5"),
    ("we get 3, 4 and then -5.5", "-5.5"),
    ("a 50% share", "50%"),
    ("3/4 of the cake", "3/4"),
    ("no numbers here", None),
])
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize("answer, reference, expected", [
    ("1/2", "0.5", True), ("0.5", r"\frac{1}{2}", True), (r"\boxed{0.5}", "1/2", True),
    ("#### 72", "72.0", True), ("1,000", "1000", True), ("50%", "0.5", True), ("50%", "50", True),
    ("0.5", "50", False), ("71", "72", False), (r"2\sqrt{3}", "2", False), (r"2\sqrt{3}", r"\sqrt{12}", True),
    ("x^2+1", "1+x^2", True), (None, "5", False), ("5", "no answer given", None), ("1", "9^{9^9}", None),
])
def test_answers_match(answer, reference, expected):
    assert answers_match(answer, reference) is expected


def test_answers_match_from_a_worker_thread():
    # math-verify's SIGALRM timeouts raise outside the main thread; the stage calls from thread pools
    out = []
    worker = threading.Thread(target=lambda: out.append((answers_match("1/2", "0.5"), answers_match("3", "4"))))
    worker.start()
    worker.join(timeout=30)
    assert out == [(True, False)]


# --- ground truth ----------------------------------------------------------------------------------

@pytest.mark.parametrize("right", ["The answer is 1/2.", "So 0.5", r"\boxed{\frac{1}{2}}", r"we get \boxed{0.5}"])
def test_ground_truth_equivalent_forms(right):
    group = [row("r1", right, reference="0.5"), row("r2", r"\boxed{3}", reference="0.5")]
    decision = judge_ground_truth(group)
    assert isinstance(decision, Pair) and decision.chosen["id"] == "r1" and decision.rejected["id"] == "r2"
    assert decision.evidence["reference_answer"] == "0.5" and decision.evidence["rejected_answer"] == "3"


def test_ground_truth_gsm8k_reference():
    group = [row("r1", "It is 72.0 in all", reference="#### 72"), row("r2", "#### 70", reference="#### 72")]
    assert grade(group) == {"r1": ("72.0", True), "r2": ("70", False)}
    assert judge_ground_truth(group).chosen["id"] == "r1"


def test_ground_truth_prefers_best_correct_and_hardest_negative():
    group = [row("a", "#### 5", 1.0, reference="5"), row("b", "#### 5", 3.0, reference="5"),
             row("c", "#### 4", 2.5, reference="5"), row("d", "#### 6", 0.5, reference="5"),
             row("e", "#### 7", None, reference="5")]
    decision = judge_ground_truth(group)
    assert (decision.chosen["id"], decision.rejected["id"]) == ("b", "c")


def test_ground_truth_passes():
    assert judge_ground_truth([row("a", "1"), row("b", "2")]) == Pass("ground_truth", "no_reference")
    same = [row("a", "#### 5", reference="5"), row("b", r"\boxed{5}", reference="5")]
    assert judge_ground_truth(same) == Pass("ground_truth", "all_correct")
    wrong = [row("a", "#### 4", reference="5"), row("b", "no idea", reference="5")]
    assert judge_ground_truth(wrong) == Pass("ground_truth", "all_wrong")
    odd = [row("a", "#### 4", reference="see the figure"), row("b", "#### 5", reference="see the figure")]
    assert judge_ground_truth(odd) == Pass("ground_truth", "reference_unparseable")


def test_ground_truth_never_chooses_a_truncated_answer():
    group = [row("cut", "... so #### 5", 9.0, finish="length", reference="5"), row("ok", "#### 5", 1.0, reference="5"),
             row("bad", "#### 4", 2.0, reference="5")]
    assert judge_ground_truth(group).chosen["id"] == "ok"
    only_cut = [group[0], group[2]]
    assert judge_ground_truth(only_cut) == Pass("ground_truth", "correct_truncated")


# --- verifier --------------------------------------------------------------------------------------

IDS = ["punctuation:no_comma", "change_case:english_lowercase", "detectable_format:number_bullet_lists"]
KWARGS = [{}, {}, {"num_bullets": 2}]
FOLLOWS = "* first point\n* second point"
BREAKS = "* First, a point\n* second point"  # a comma and a capital


def test_verifier_chooses_the_follower():
    group = [row("bad", BREAKS, 5.0, ids=IDS, kwargs=KWARGS), row("good", FOLLOWS, 1.0, ids=IDS, kwargs=KWARGS),
             row("worse", "one line only", 0.0, ids=IDS, kwargs=KWARGS)]
    decision = judge_verifier(group)
    assert (decision.chosen["id"], decision.rejected["id"]) == ("good", "bad")  # the hard negative
    assert decision.evidence["chosen_checks"] == [{"instruction_id": i, "followed": True} for i in IDS]
    assert decision.evidence["rejected_checks"] == [
        {"instruction_id": IDS[0], "followed": False}, {"instruction_id": IDS[1], "followed": False},
        {"instruction_id": IDS[2], "followed": True}]


def test_verifier_passes():
    assert judge_verifier([row("a", FOLLOWS), row("b", BREAKS)]) == Pass("verifier", "no_instructions")
    assert checks(row("a", FOLLOWS)) is None
    both = [row("a", FOLLOWS, ids=IDS, kwargs=KWARGS), row("b", FOLLOWS, ids=IDS, kwargs=KWARGS)]
    assert judge_verifier(both) == Pass("verifier", "all_follow")
    none = [row("a", BREAKS, ids=IDS, kwargs=KWARGS), row("b", "x, Y", ids=IDS, kwargs=KWARGS)]
    assert judge_verifier(none) == Pass("verifier", "none_follow")
    cut = [row("a", FOLLOWS, finish="length", ids=IDS, kwargs=KWARGS), row("b", BREAKS, ids=IDS, kwargs=KWARGS)]
    assert judge_verifier(cut) == Pass("verifier", "followers_truncated")


@pytest.mark.parametrize("ids, raw_kwargs", [
    (IDS, "{not json"), (IDS, json.dumps([{}])), (["no:such_instruction"], json.dumps([{}])),
    (["detectable_format:number_bullet_lists"], json.dumps([{"bullets": 2}])),
])
def test_verifier_unreadable_instructions_pass(ids, raw_kwargs):
    group = [{**row(r, FOLLOWS, ids=ids), "instruction_kwargs": raw_kwargs} for r in ("a", "b")]
    assert judge_verifier(group) == Pass("verifier", "instructions_unreadable")


# --- reward model ----------------------------------------------------------------------------------

def test_reward_model_holds_its_margin():
    group = [row("hi", "x", 3.3), row("mid", "y", 3.2), row("lo", "z", 3.1), row("none", "w", None)]
    assert judge_reward_model(group, 0.21) == Pass("reward_model", "margin_below_minimum")
    at = judge_reward_model(group, 0.2, reward_model="rm-1")  # 3.3 - 3.1 is 0.1999... in floats
    assert (at.chosen["id"], at.rejected["id"]) == ("hi", "lo") and at.evidence["judge_model"] == "rm-1"
    assert at.evidence["margin"] == pytest.approx(0.2)
    assert isinstance(judge_reward_model(group, 0.1), Pair)


def test_reward_model_passes_and_truncation():
    assert judge_reward_model([row("a", "x", 1.0), row("b", "y")], 0.0) == Pass("reward_model", "unscored")
    assert judge_reward_model([row("a", "x", 1.0), row("b", "y", 1.0)], 0.0) == Pass("reward_model", "tie")
    group = [row("cut", "x", 9.0, finish="length"), row("ok", "y", 5.0), row("lo", "z", 1.0)]
    decision = judge_reward_model(group, 0.5)
    assert (decision.chosen["id"], decision.rejected["id"]) == ("ok", "lo") and decision.evidence["margin"] == 4.0


# --- LLM judge -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("A", "A"), ("B.", "B"), ("**B**", "B"), ("(a)", "A"), ("[[A]]", "A"), ("Verdict: B", "B"),
    ("Response A is better", "A"), ("Response A is better than response B", "A"), ("B is better than A", "B"),
    ("The better response is B", "B"), ("I prefer A.", "A"), ("B\n\nReason: it is not padded", "B"),
    ("both are fine", None), ("Both A and B are good", None), ("neither", None), ("A and B", None),
    ("A or B", None), ("", None), ("I'm sorry, I can't compare these.", None), ("Verdict: tie", None),
    ("A good reply would be longer", None), ("the answer is a bit long", None), ("Neither A nor B", None),
    ("Option A: short. Option B: long.", None), ("A/B", None), ("The answer is B, not A", "B"),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def _shown(request: ChatRequest, letter: str) -> str:
    prompt = request.messages[-1]["content"]
    a, b = prompt.split("=== Reply A ===")[1].split("=== Reply B ===")
    return a if letter == "A" else b.split("Which reply is better?")[0]


def test_ask_both_orders_one_call_two_requests_per_item():
    engine = ScriptedChatEngine(lambda r: "A")
    calls = []
    original = engine.chat
    engine.chat = lambda requests: calls.append(len(requests)) or original(requests)
    items = [(PROMPT, "first one", "second one"), (PROMPT, "third", "fourth")]
    readings = asyncio.run(ask_both_orders(engine, items, seed=7))
    assert calls == [4] and len(engine.requests) == 4
    assert [r.order for pair in readings for r in pair] == ["first_as_A", "second_as_A"] * 2
    first, swapped = engine.requests[:2]
    assert "first one" in _shown(first, "A") and "first one" in _shown(swapped, "B")
    assert all(r.temperature == 0 and r.seed is not None for r in engine.requests)
    again, other = ScriptedChatEngine(lambda r: "A"), ScriptedChatEngine(lambda r: "A")
    asyncio.run(ask_both_orders(again, items, seed=7))
    asyncio.run(ask_both_orders(other, items, seed=8))
    seeds = [r.seed for r in engine.requests]
    assert [r.seed for r in again.requests] == seeds != [r.seed for r in other.requests]


def test_engine_error_is_an_unparseable_reading():
    engine = ScriptedChatEngine(lambda r: RuntimeError("backend down"))
    (one, two), = asyncio.run(ask_both_orders(engine, [(PROMPT, "x", "y")]))
    assert one.verdict is None and "backend down" in one.raw


def test_winner():
    assert winner((Reading("first_as_A", "A", ""), Reading("second_as_A", "B", ""))) == 0
    assert winner((Reading("first_as_A", "B", ""), Reading("second_as_A", "A", ""))) == 1
    assert winner((Reading("first_as_A", "A", ""), Reading("second_as_A", "A", ""))) is None
    assert winner((Reading("first_as_A", None, ""), Reading("second_as_A", "B", ""))) is None


def _groups():
    good = [row("g-hi", "best MARKER answer", 2.0, index=0), row("g-lo", "plain answer", 1.0, index=1)]
    flipped = [row("f-hi", "plain answer", 2.0, index=0), row("f-lo", "MARKER {here}", 1.0, index=1),
               row("f-mid", "middle", 1.5, index=2)]
    return [good, flipped, [row("solo", "alone", 1.0)]]


def test_llm_judge_that_always_says_a_has_position_bias():
    decisions = asyncio.run(judge_llm(ScriptedChatEngine(lambda r: "A"), _groups()))
    assert [d.reason for d in decisions] == ["judge_position_bias", "judge_position_bias", "too_few_responses"]
    assert isinstance(decisions[0], Drop) and "first_as_A: A" in decisions[0].raw


def test_llm_judge_by_content_picks_the_marked_response():
    engine = ScriptedChatEngine(lambda r: "A" if "MARKER" in _shown(r, "A") else "B", model_name="judge-1")
    decisions = asyncio.run(judge_llm(engine, _groups()))
    assert [(d.chosen["id"], d.rejected["id"]) for d in decisions[:2]] == [("g-hi", "g-lo"), ("f-lo", "f-hi")]
    assert len(engine.requests) == 4  # the lone response costs no request
    evidence = decisions[1].evidence
    assert evidence["judge_model"] == "judge-1"
    assert evidence["llm_verdicts"] == [{"order": "rejected_first", "verdict": "B", "raw": "B"},
                                        {"order": "chosen_first", "verdict": "A", "raw": "A"}]


def test_llm_judge_unparseable_and_truncated():
    decisions = asyncio.run(judge_llm(ScriptedChatEngine(lambda r: "both are fine"), _groups()[:1]))
    assert isinstance(decisions[0], Drop) and decisions[0].reason == "judge_unparseable"
    cut = [row("cut", "MARKER but cut", None, finish="length", index=0), row("ok", "fine", None, index=1)]
    engine = ScriptedChatEngine(lambda r: "A" if "MARKER" in _shown(r, "A") else "B")
    assert asyncio.run(judge_llm(engine, [cut])) == [Pass("llm_judge", "preferred_truncated")]
