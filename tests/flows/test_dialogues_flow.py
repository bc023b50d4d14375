"""The dialogues stage end to end over a real OpenAI-compatible server on loopback: the assistant, the
simulated user and the attribute grader are one served model whose answers depend on what is asked.
Dialogues land through the gate, `sdg sql` unnests them turn by turn, the ledger holds every drop, and
the SteerLM export labels each assistant turn with its stored scores."""

import asyncio
import json
import re

import pytest
from typer.testing import CliRunner

from benchmarks.servers.fake_openai import FakeOpenAIServer
from flows.cli import app
from flows.config import parse_config
from flows.dialogues import dialogues_flow
from storage.exports import export
from tests.flows.published import publish_prompts

RUN_DATE = "2026-11-21"
GOOD = {"helpfulness": 4, "correctness": 3.6, "coherence": 4, "complexity": 1.2, "verbosity": 2.4}
POOR = {"helpfulness": 1, "correctness": 1, "coherence": 2, "complexity": 0, "verbosity": 1}
PROMPTS = [
    {"id": "tides", "task_type": "open_qa", "messages": [{"role": "user", "content": "Why do tides happen?"}]},
    {"id": "basil", "task_type": "open_qa", "messages": [{"role": "user", "content": "How do I keep basil fresh?"}]},
    {"id": "egg", "task_type": "two_turn", "messages": [
        {"role": "user", "content": "How do I boil an egg?"}, {"role": "assistant", "content": "GOOD: nine minutes."},
        {"role": "user", "content": "And a soft one?"}]},
    {"id": "dull", "task_type": "open_qa", "messages": [{"role": "user", "content": "Tell me about gravel."}]},
]


def answer(body, index):
    text = body["messages"][-1]["content"]
    if "Give the reply five grades" in text:  # the grader: GOOD replies score high
        reply = text.split("The reply to grade:")[1].split(">>>")[0]
        return json.dumps(GOOD if "GOOD" in reply else POOR)
    if "Write the next message this person sends" in text:  # the simulated user
        turns = text.count("\nAssistant:") + text.startswith("Assistant:")
        return f"Thanks! Could you go one step further, step {turns}?"
    first = body["messages"][0]["content"]
    quality = "dull" if "gravel" in first and len(body["messages"]) > 1 else "GOOD"
    return f"{quality} answer number {len(body['messages'])} about {first[:30]}"


@pytest.fixture
def server():
    with FakeOpenAIServer(latency_s=0.002, answer=answer) as running:
        yield running


def config(tmp_path, base_url, batch_size=2, **extra):
    return parse_config({
        "name": "talk", "seed": 11, "lake": {"root": str(tmp_path / "lake")},
        "models": {"served": {"backend": "openai", "base_url": base_url, "model": "fake", "concurrency": 16},
                   "grader": {"kind": "reward", "backend": "llm-judge", "judge": "served"}},
        "prompts": {"enabled": False},
        "dialogues": {"enabled": True, "rounds": 3, "assistant": {"model": "served"}, "reward": "grader",
                      "min_turn_reward": 3.0, "batch_size": batch_size},
        "quality": {"dialogues": {"near_dedup": False}},  # scripted answers share most of their words
        **extra,
    })


def test_dialogues_land_through_the_gate_and_read_turn_by_turn(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)
    catalog = publish_prompts(cfg, PROMPTS, RUN_DATE)
    summary = asyncio.run(dialogues_flow(cfg, RUN_DATE))
    assert all(b["state"] == "published" for b in summary["batches"]), summary["batches"]
    assert summary["drops"] == {"low_turn_reward": 1} and summary["dialogues"] == 3

    rows = {r["prompt_id"]: r for r in catalog.query("SELECT * FROM dialogues").to_pylist()}
    assert set(rows) == {"tides", "basil", "egg"}  # gravel's second answer scored below the floor
    for row in rows.values():
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 3
        assert row["persona"] and json.loads(row["persona_profile"])["id"] == row["persona"]
        assert row["source"] == "role_play" and row["stage"] == "dialogues" and row["user_model"] == "fake"
        assert len(row["turn_rewards"]) == 3 and row["reward"] == min(row["turn_rewards"])
        assert not any(m["content"].startswith("Thanks") for m in row["messages"][1:])  # filler stripped
    assert rows["egg"]["messages"][1]["content"] == "GOOD: nine minutes."  # continued from its own turns

    ledger = catalog.query("SELECT reason, sum(count) AS n FROM drops WHERE stage = 'dialogues' GROUP BY ALL")
    assert {r["reason"]: r["n"] for r in ledger.to_pylist()} == {"low_turn_reward": 1}

    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    query = ("SELECT prompt_id, turn.role AS role, turn.content AS content "
             "FROM (SELECT prompt_id, unnest(messages) AS turn FROM dialogues) WHERE prompt_id = 'tides'")
    result = CliRunner().invoke(app, ["sql", "-c", str(config_file), "--format", "json", query])
    assert result.exit_code == 0, result.output
    turns = json.loads(result.stdout)
    assert [t["role"] for t in turns] == ["user", "assistant"] * 3 and turns[0]["content"] == "Why do tides happen?"

    out = tmp_path / "steerlm.jsonl"
    assert export(catalog, "dialogues", "steerlm", out) == 3
    by_first = {json.loads(line)["conversations"][0]["value"]: json.loads(line) for line in out.read_text().splitlines()}
    record = by_first["Why do tides happen?"]
    assert [t["from"] for t in record["conversations"]] == ["User", "Assistant"] * 3
    labels = [t["label"] for t in record["conversations"] if t["from"] == "Assistant"]
    stored = rows["tides"]["turn_attributes"]
    assert labels == [",".join(f"{a}:{round(v)}" for a, v in turn.items()) for turn in stored]
    assert labels[0] == "helpfulness:4,correctness:4,coherence:4,complexity:1,verbosity:2"

    asyncio.run(dialogues_flow(cfg, RUN_DATE))  # a rerun of the night: the same dialogues, none twice
    again = catalog.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM dialogues").to_pylist()[0]
    assert again == {"n": 3, "ids": 3}


def test_sdg_run_shows_what_the_night_made_and_what_to_try(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)
    publish_prompts(cfg, PROMPTS, RUN_DATE)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["run", str(config_file), "--run-date", RUN_DATE])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Published rows:" in out and re.search(r"dialogues\s+3\b", out), out
    assert re.search(r"1\s+dialogues: low_turn_reward", out), out
    assert "fake (openai):" in out and "requests" in out
    assert f"sdg sql -c {config_file}" in out and "Try:" in out
    assert re.search(r"│\s*2/2\s*│", out), out  # the live table: batches done of planned

    # the night's own artifacts, under keys that stay the same every night
    artifacts = {a.key: a for a in asyncio.run(read_artifacts()) if a.key}
    night = artifacts["talk-night"].data
    assert "| dialogues | 3 | 2 of 2 published | 100% |" in night and "## Models" in night and "sdg sql" in night
    table = json.loads(artifacts["talk-night-batches"].data)
    assert {(r["stage"], r["dataset"], r["state"]) for r in table} == {("dialogues", "dialogues", "published")}
    assert "talk-dialogues-batches" in artifacts and not asyncio.run(read_artifacts("gate-"))
    assert artifacts["talk-dialogues-progress"].data == 100.0  # the stage's progress, at its end


async def read_artifacts(prefix: str = "talk-"):
    """The session's artifacts whose key starts with `prefix` (filtered by the server: no page limit in the way)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
        return [a for a in found if a.key and a.key.startswith(prefix)]


def test_a_target_of_n_dialogues_ends_with_exactly_n_though_the_gate_drops_some(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)
    cfg.dialogues.min_turn_reward = None  # the gate, not the stage, drops the dull ones now
    cfg.quality.dialogues.min_reward = 3.0
    cfg.dialogues.target.rows = 5
    cfg.dialogues.batches_in_flight = 1
    texts = ["Tell me about gravel.", "Why do tides happen?", "Tell me about gravel dust."]
    texts += [f"How does thing number {i} work?" for i in range(13)]
    prompts = [{"id": f"t{i:02d}", "task_type": "open_qa", "messages": [{"role": "user", "content": text}]}
               for i, text in enumerate(texts)]
    catalog = publish_prompts(cfg, prompts, RUN_DATE)
    summary = asyncio.run(dialogues_flow(cfg, RUN_DATE))
    assert summary["ended_by"] == "target"
    assert catalog.query("SELECT count(*) AS n FROM dialogues").to_pylist()[0]["n"] == 5
    gate_dropped = sum(o["rows_in"] - o["rows_out"] for o in summary["batches"])
    assert gate_dropped >= 1  # the gate dropped a dull dialogue, and another batch made up for it
    ledger = {r["reason"]: r["n"] for r in catalog.query(
        "SELECT reason, sum(count) AS n FROM drops WHERE stage = 'dialogues' GROUP BY ALL").to_pylist()}
    assert ledger.get("low_reward", 0) == gate_dropped
    users = sum(1 for body in server.bodies if "Write the next message" in body["messages"][-1]["content"])
    assert users <= 2 * 10  # at most one batch past the one that reached the target: 10 of 16 dialogues played
    assert ledger.get("past_target", 0) == summary["played"] - 5 - gate_dropped  # played past it: recorded, not landed


def test_a_batch_budget_ends_the_stage_and_says_so(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)
    cfg.dialogues.target.max_batches = 1
    publish_prompts(cfg, PROMPTS, RUN_DATE)
    summary = asyncio.run(dialogues_flow(cfg, RUN_DATE))
    assert summary["ended_by"] == "max_batches" and summary["played"] + sum(summary["drops"].values()) == 2


def test_a_night_answers_the_prompt_batches_it_is_handed_not_the_newest(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)
    publish_prompts(cfg, PROMPTS[:2], "2026-11-01", batch="prompts-early")
    catalog = publish_prompts(cfg, PROMPTS[2:], RUN_DATE, batch="prompts-late")  # the newest night
    summary = asyncio.run(dialogues_flow(cfg, "2026-11-01", prompt_batches=["prompts-early"]))  # a backfilled night
    assert summary["prompts"] == 2
    grown = {r["prompt_id"] for r in catalog.query("SELECT prompt_id FROM dialogues").to_pylist()}
    assert grown == {"tides", "basil"}


def test_sdg_run_says_why_a_night_failed(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)  # no prompts published, and no prompts stage tonight
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["run", str(config_file), "--run-date", RUN_DATE])
    assert result.exit_code == 1
    assert "run failed" in result.output and "selects no published prompt" in result.output, result.output
    assert not server.bodies  # it failed before any model was asked
