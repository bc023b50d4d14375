"""One night end to end on the embedded default model: prompts -> scored responses -> judged pairs,
then role-played dialogues, through every gate; the log-probability judge is the reward; best-of-n
rows land in `dialogues` beside the role-played ones, `sdg sql` unnests them turn by turn; and TRL's
DPOTrainer takes real steps on the exported `trl-dpo` file with the tiny model."""

import asyncio
import json

import pytest

from typer.testing import CliRunner

from engines.tiny import build_tiny_models
from flows.cli import app
from flows.config import parse_config
from storage.catalog import Catalog
from storage.exports import export
from tests.trainers import run_dpo_steps

pytestmark = pytest.mark.slow
RUN_DATE = "2026-11-21"


async def artifact_keys(prefix: str) -> set[str]:
    """Keys of the session's artifacts that start with `prefix` (filtered by the server: no page limit in the way)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
        return {a.key for a in found if a.key and a.key.startswith(prefix)}


def night(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps(row) for row in [
        {"q": "Natalia sold 48 clips in April and half as many in May. How many clips did she sell in all?", "a": "72"},
        {"q": "What is the sum of the first ten positive integers?", "a": "55"},
        {"q": "How do I keep fresh basil from wilting?", "a": None},
        {"q": "Why is the sky blue?", "a": None},
        # asked for a short answer, the 135M model stops before max_tokens: an untruncated best-of-n candidate
        {"q": "In one short sentence: what is a cat?", "a": None},
    ]))
    return parse_config({
        "name": "embedded", "seed": 3,
        "lake": {"root": str(tmp_path / "lake")},
        "models": {"default": {"sampling": {"max_tokens": 64}, "batch_size": 32}},
        "prompts": {
            "max_tokens": 64, "temperature": 0.7,
            "topics": {"macro_topics": 0, "subtopics_per_topic": 0, "user_topics": ["cooking"]},
            "open_qa": {"per_topic": 2, "revise": False}, "writing": {"enabled": False},
            "math": {"enabled": False}, "coding": {"enabled": False},
            "instruction_following": {"count": 2, "forms": ["single_turn"]}, "two_turn": {"count": 0},
            "seeds": {"sources": [{"path": str(seeds), "prompt_column": "q", "reference_column": "a"}]},
        },
        "preferences": {
            "enabled": True, "responses_per_prompt": 3,
            "generators": [{"model": "default", "max_tokens": 64, "temperature": 0.9}],
            "min_margin": 0.05,
        },
        "dialogues": {
            "enabled": True, "rounds": 2, "prompts": {"limit": 3, "task_types": ["open_qa", "seed"]},
            "assistant": {"max_tokens": 160, "system_prompt": "Answer in at most three short sentences."},
            "user": {"max_tokens": 48},
        },
        "quality": {"prompts": {"near_dedup": False, "min_acceptance_rate": 0.0},
                    "dialogues": {"near_dedup": False, "min_acceptance_rate": 0.0},
                    "preferences": {"min_acceptance_rate": 0.0}},
    })


def test_a_night_on_the_embedded_model_trains_dpo(tmp_path, prefect_harness):
    config = night(tmp_path)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["run", str(config_file), "--run-date", RUN_DATE, "--json"])  # the main command
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    report = summary["report"]
    published = {r["dataset"]: r["rows"] for r in report["rows"]}
    assert all(published[d] > 0 for d in ("topics", "prompts", "responses", "preferences", "dialogues")), published
    assert {u["model"] for u in report["usage"]} and report["lake"].endswith("/lake/")
    pref = summary["preferences"]
    assert pref["trust"]["reward_model"]["trusted"], pref["trust"]  # the embedded judge beats its calibration floor
    catalog = Catalog(config.lake)
    prompts = catalog.query("SELECT count(*) AS n FROM prompts").to_pylist()[0]["n"]
    responses = catalog.query("SELECT count(*) AS n, min(reward) AS lo, max(reward) AS hi, "
                              "count(DISTINCT prompt_id) AS prompts FROM responses").to_pylist()[0]
    assert responses["prompts"] == prompts and responses["n"] >= 2 * prompts  # empty answers are drops
    assert responses["lo"] < responses["hi"]  # the log-probability judge tells responses apart
    pairs = catalog.query("SELECT judge, chosen_reward, rejected_reward FROM preferences").to_pylist()
    assert pairs, pref["judges"]
    for pair in pairs:
        if pair["judge"] == "reward_model":
            assert pair["chosen_reward"] - pair["rejected_reward"] >= 0.05
    best = catalog.query("SELECT count(*) AS n FROM dialogues WHERE source = 'best_of_n'").to_pylist()[0]["n"]
    assert best >= 1
    talk = summary["dialogues"]
    usage = {r["run_id"] for r in catalog.query("SELECT run_id FROM usage").to_pylist()}
    assert usage == {summary["prompts"]["run_id"], pref["run_id"], talk["run_id"]}  # each stage charged its own

    # role play: every selected prompt is a published dialogue or a drop with its reason in the ledger
    played = catalog.query("SELECT * FROM dialogues WHERE source = 'role_play'").to_pylist()
    ledger = catalog.query("SELECT sum(count) AS n FROM drops WHERE stage = 'dialogues'").to_pylist()[0]["n"] or 0
    assert talk["prompts"] == 3 and len(played) + ledger == 3 and len(played) == talk["dialogues"]
    assert played, talk["drops"]  # the embedded model holds a two-round conversation often enough
    for row in played:
        assert [m["role"] for m in row["messages"]] == ["system"] + ["user", "assistant"] * 2
        assert row["persona"] and len(row["turn_rewards"]) == 2 and row["reward"] == min(row["turn_rewards"])
    result = CliRunner().invoke(app, ["sql", "-c", str(config_file), "--format", "json",
                                      "SELECT id, turn.role AS role FROM (SELECT id, unnest(messages) AS turn "
                                      "FROM dialogues WHERE source = 'role_play')"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 5 * len(played)

    artifacts = asyncio.run(artifact_keys("embedded-"))
    assert {"embedded-prompts-summary", "embedded-preferences-judges", "embedded-dialogues-report", "embedded-night",
            "embedded-night-batches", "embedded-dialogues-batches"} <= artifacts, artifacts
    assert not asyncio.run(artifact_keys("gate-"))  # no artifact per gate batch

    out = tmp_path / "dpo.jsonl"
    assert export(catalog, "preferences", "trl-dpo", out) == len(pairs)
    tiny = build_tiny_models(tmp_path / "tiny")
    losses = run_dpo_steps(out, tiny["chat"], tmp_path / "dpo-run", steps=2)
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # two real, finite steps
