"""The calibration set (built, shipped, verified) and the RewardBench accuracy of a judge on it."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import pytest
import yaml
from typer.testing import CliRunner

from engines.scripted import ScriptedChatEngine
from engines.types import RewardResult, Usage
from tasks.calibration.build import build_calibration_set, build_pairs, main, to_jsonl
from tasks.calibration.evaluate import (
    PairsError,
    accuracy,
    evaluate_llm_judge,
    evaluate_reward,
    load_pairs,
    shipped_pairs_path,
)
from tasks.instructions.registry import verify

SUBSETS = ("easy_negatives", "facts", "instruction_following", "math")


@pytest.fixture(scope="module")
def shipped() -> list[dict]:
    return load_pairs(shipped_pairs_path())


# --- the set itself ---------------------------------------------------------------------------

def test_shipped_file_is_exactly_a_rebuild():
    assert shipped_pairs_path().read_text(encoding="utf-8") == to_jsonl(build_calibration_set(seed=0))


def test_main_writes_the_set(tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert main([str(out)]) == 0
    assert out.read_bytes() == shipped_pairs_path().read_bytes()
    assert build_calibration_set(seed=1) != build_calibration_set(seed=0)  # the seed matters


def test_subsets_sizes_and_form(shipped):
    sizes = Counter(row["subset"] for row in shipped)
    assert sorted(sizes) == list(SUBSETS)
    assert all(n >= 20 for n in sizes.values()), sizes
    assert 60 <= len(shipped) <= 100
    assert len({row["id"] for row in shipped}) == len(shipped)
    for row in shipped:
        assert list(row) == ["id", "subset", "prompt", "chosen", "rejected"]
        assert all(isinstance(v, str) for v in row.values()) and row["chosen"] != row["rejected"]


def test_instruction_pairs_pass_the_checkers(shipped):
    by_id = {row["id"]: row for row in shipped}
    built = [p for p in build_pairs(0) if p.subset == "instruction_following"]
    assert len(built) >= 20
    for pair in built:
        row, ids, kwargs = by_id[pair.id], pair.meta["instruction_ids"], pair.meta["kwargs"]
        assert all(verify(row["chosen"], ids, kwargs)), pair.id
        assert not all(verify(row["rejected"], ids, kwargs)), pair.id


def test_math_answers_are_right_by_arithmetic(shipped):
    by_id = {row["id"]: row for row in shipped}
    for pair in (p for p in build_pairs(0) if p.subset == "math"):
        expression = pair.meta["expression"]
        assert re.fullmatch(r"[\d\s+\-*/()]+", expression)  # plain arithmetic, safe to evaluate
        right = eval(expression, {"__builtins__": {}})  # noqa: S307
        row = by_id[pair.id]
        final = [int(re.search(r"The answer is (-?\d+)\.$", row[k]).group(1)) for k in ("chosen", "rejected")]
        assert final[0] == right, (pair.id, row["chosen"])
        assert final[1] != right, (pair.id, row["rejected"])
        # every number of the expression is one the question states
        assert set(re.findall(r"\d+", expression)) - {"60", "100"} <= set(re.findall(r"\d+", row["prompt"]))


# --- loading ----------------------------------------------------------------------------------

def test_load_pairs_reads_parquet_with_message_prompts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"subset": "s", "prompt": [{"role": "user", "content": "Hi?"}], "chosen": "Hello.", "rejected": ""}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    assert load_pairs(tmp_path / "p.parquet") == rows


def test_load_pairs_errors_name_the_file_and_column(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "subset": "s", "prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(PairsError, match=r"bad\.jsonl: row 1 \(id 'x'\): missing column\(s\) rejected"):
        load_pairs(bad)
    with pytest.raises(PairsError, match="no such pairs file"):
        load_pairs(tmp_path / "absent.jsonl")
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(PairsError, match="use .jsonl or .parquet"):
        load_pairs(tmp_path / "p.csv")


# --- accuracy ---------------------------------------------------------------------------------

def test_accuracy_counts_ties_wrong_and_none_as_errors():
    rows = [{"subset": "a"}, {"subset": "a"}, {"subset": "b"}, {"subset": "b"}, {"subset": "b"}]
    report = accuracy(rows, [True, False, None, True, True], judge="j")
    assert (report.pairs, report.correct, report.errors, report.accuracy) == (5, 3, 1, 0.6)
    assert report.per_subset == {"a": {"pairs": 2, "correct": 1, "errors": 0, "accuracy": 0.5},
                                 "b": {"pairs": 3, "correct": 2, "errors": 1, "accuracy": 2 / 3}}
    assert report.mean_subset_accuracy == pytest.approx((0.5 + 2 / 3) / 2)
    assert report.to_dict()["judge"] == "j"
    with pytest.raises(ValueError, match="2 pairs but 1 outcomes"):
        accuracy(rows[:2], [True], judge="j")


class FakeReward:
    """Scores by a rule on the pair id the test put in front of each prompt: `[math-003] ...`."""

    backend = "fake"

    def __init__(self, rule):
        self.model_name, self.usage, self.rule, self.calls = "fake", Usage(), rule, 0

    async def score(self, conversations):
        self.calls += 1
        out = []
        for conversation in conversations:
            index = int(re.match(r"\[\w+-(\d+)#(\d+)\]", conversation[0]["content"]).group(2))
            out.append(self.rule(index, conversation[-1]["content"], conversation))
        return out

    async def aclose(self):
        return None


def _tagged(rows):
    """Rows whose prompts carry `[id#index]`, so an engine can tell which pair a conversation is."""
    rows = rows[: len(rows) // 4 * 4]  # whole groups of four: 3 of every 4 right is exactly 0.75
    return [{**row, "prompt": f"[{row['id']}#{i}] {row['prompt']}"} for i, row in enumerate(rows)]


def test_reward_judge_of_known_accuracy_measures_exactly_that(shipped):
    pairs = _tagged(shipped)
    chosen = {p["prompt"]: p["chosen"] for p in pairs}

    def three_in_four(index, answer, conversation):
        is_chosen = answer == chosen[conversation[0]["content"]]
        return RewardResult(reward=float(is_chosen == (index % 4 != 3)))

    engine = FakeReward(three_in_four)
    report = asyncio.run(evaluate_reward(engine, pairs, "fake"))
    assert engine.calls == 1  # chosen and rejected scored in one call
    assert (report.accuracy, report.errors, report.pairs) == (0.75, 0, len(pairs))
    for subset in SUBSETS:
        indices = [i for i, p in enumerate(pairs) if p["subset"] == subset]
        right = sum(i % 4 != 3 for i in indices)
        assert report.per_subset[subset] == {"pairs": len(indices), "correct": right, "errors": 0,
                                             "accuracy": right / len(indices)}


def test_reward_ties_are_wrong_and_failures_are_errors(shipped):
    pairs = _tagged(shipped)
    ties = asyncio.run(evaluate_reward(FakeReward(lambda i, a, c: RewardResult(reward=1.0)), pairs, "tie"))
    assert (ties.accuracy, ties.correct, ties.errors) == (0.0, 0, 0)

    def flaky(index, answer, conversation):
        if index % 2:
            return RewardResult(error="boom") if index % 4 == 1 else RewardResult(reward=None)
        return RewardResult(reward=float(len(answer)))
    report = asyncio.run(evaluate_reward(FakeReward(flaky), pairs, "flaky"))
    assert report.errors == len(pairs) // 2 and report.correct <= len(pairs) // 2


def _oracle(pairs, right):
    """A pairwise judge that names chosen when `right(index)`, else rejected, in both orders."""
    by_tag = {p["prompt"].split("]")[0] + "]": p for p in pairs}

    def script(request):
        text = request.messages[0]["content"]
        tag = re.search(r"\[user\]\n(\[[^\]]+\])", text).group(1)
        reply_a = text.split("=== Reply A ===\n", 1)[1].split("\n\n=== Reply B ===", 1)[0]
        pair, index = by_tag[tag], int(tag.split("#")[1][:-1])
        wanted = pair["chosen"] if right(index) else pair["rejected"]
        return "A" if reply_a == wanted else "B"
    return script


def test_llm_judge_of_known_accuracy_measures_exactly_that(shipped):
    pairs = _tagged(shipped)
    engine = ScriptedChatEngine(_oracle(pairs, lambda i: i % 4 != 3))
    report = asyncio.run(evaluate_llm_judge(engine, pairs, "oracle", seed=3))
    assert len(engine.requests) == 2 * len(pairs)  # each pair read in both orders
    assert (report.accuracy, report.errors) == (0.75, 0)
    biased = asyncio.run(evaluate_llm_judge(ScriptedChatEngine(lambda r: "A"), pairs, "always-A"))
    assert (biased.accuracy, biased.errors) == (0.0, 0)  # both orders disagree: a tie, wrong
    mute = asyncio.run(evaluate_llm_judge(ScriptedChatEngine(lambda r: "I cannot say."), pairs, "mute"))
    assert (mute.accuracy, mute.errors) == (0.0, len(pairs))


# --- the command line -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reward_config(tmp_path_factory):
    from engines.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("calibration-cli")
    paths = build_tiny_models(root / "tiny")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({"models": {"tiny-reward": {
        "kind": "reward", "backend": "transformers", "model": str(paths["reward"]), "device": "cpu"}}}))
    return config


def test_cli_judge_eval_json(reward_config):
    from flows.cli import app

    result = CliRunner().invoke(app, ["judge", "eval", str(shipped_pairs_path()), "--judge", "tiny-reward",
                                      "-c", str(reward_config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = shipped_pairs_path().read_text().splitlines()
    assert report["pairs"] == len(rows) and report["judge"] == "tiny-reward"
    assert 0.0 <= report["accuracy"] <= 1.0
    assert sorted(report["per_subset"]) == list(SUBSETS)


def test_cli_judge_eval_table_on_a_user_file(reward_config, tmp_path, shipped):
    from flows.cli import app

    small = tmp_path / "small.jsonl"
    small.write_text(to_jsonl(shipped[:2] + shipped[-2:]))
    result = CliRunner().invoke(app, ["judge", "eval", str(small), "--judge", "tiny-reward", "-c", str(reward_config)])
    assert result.exit_code == 0, result.output
    assert "overall" in result.stdout and "math" in result.stdout and "facts" in result.stdout


def test_cli_unknown_judge_exits_2_naming_known_models(reward_config):
    from flows.cli import app

    result = CliRunner().invoke(app, ["judge", "eval", "--judge", "nope", "-c", str(reward_config), "--json"])
    assert result.exit_code == 2
    assert "nope" in result.output and "default" in result.output and "tiny-reward" in result.output
