"""The prompts flow against a real OpenAI-compatible server on loopback (fresh list answers):
part-by-part landing, the instruction-following quota, the mix in gate reports, reuse of a
published topic tree, and a rerun that duplicates nothing; the stage on a Dask cluster and after a kill."""

import asyncio
import json
import os
from collections import Counter

import pytest

from benchmarks.servers.fake_openai import FakeOpenAIServer, keyed_lists, varied_lists
from flows.cluster import ClusterConfig
from flows.config import parse_config
from flows.prompts import prompts_flow
from storage.catalog import Catalog


@pytest.fixture
def server():
    with FakeOpenAIServer(latency_s=0.01, answer=varied_lists(items=4, seed=3)) as running:
        yield running


def config(tmp_path, base_url, **topics):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"prompt": f"Seed prompt number {i} about tides and moons?"}) + "\n"
                             for i in range(3)))
    return parse_config({
        "name": "http",
        "lake": {"root": str(tmp_path / "lake")},
        "models": {"fake": {"backend": "openai", "base_url": base_url, "model": "fake", "concurrency": 8}},
        "prompts": {
            "generator": "fake",
            "batch_size": 5,
            "topics": {"macro_topics": 2, "subtopics_per_topic": 2, **topics},
            "open_qa": {"per_topic": 2}, "writing": {"per_topic": 1, "text_types": ["email"]},
            "math": {"per_topic": 1, "levels": ["elementary"]}, "coding": {"per_topic": 1},
            "instruction_following": {"count": 10}, "two_turn": {"count": 2},
            "seeds": {"sources": [{"path": str(seeds)}]},
        },
    })


def asked_for_topics(server) -> int:
    return sum("subject area" in body["messages"][0]["content"] for body in server.bodies)


def test_parts_land_through_gates_and_a_rerun_adds_nothing(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url)
    summary = asyncio.run(prompts_flow(cfg, "2026-11-20"))
    catalog = Catalog(cfg.lake)
    rows = catalog.query("SELECT task_type, turn_form, instruction_ids FROM prompts").to_pylist()
    per_type = Counter(r["task_type"] for r in rows)
    # 4 leaves: 8 open QA, 4 writing, 4 math, 4 coding; 3 seeds; 2 two-turn; 10 instruction-following
    # (8 on the open QA prompts, 2 on writing ones: the quota is filled in that order)
    assert per_type == {"open_qa": 8, "writing": 4, "math": 4, "coding": 4, "seed": 3, "two_turn": 2,
                        "instruction_following": 10}
    forms = Counter(r["turn_form"] for r in rows if r["task_type"] == "instruction_following")
    # forms rotate across both shares (the writing share goes on at the 9th: second, then single turn)
    assert forms == {"single_turn": 4, "multi_turn": 3, "second_turn": 3}
    assert all(r["instruction_ids"] for r in rows if r["task_type"] == "instruction_following")

    # every part landed in batches of 5, each through its gate, each report carrying its mix
    prompt_batches = [b for b in summary["batches"] if b["dataset"] == "prompts"]
    assert all(b["state"] == "published" and b["rows_in"] <= 5 for b in summary["batches"])
    assert sum(b["rows_out"] for b in prompt_batches) == len(rows)
    mixed = Counter()
    for batch in prompt_batches:
        for entry in batch["mix"]:
            mixed[entry["task_type"]] += entry["rows"]
    assert mixed == per_type
    gates = catalog.query("SELECT count(DISTINCT batch_id) AS n FROM gate_results").column("n")[0].as_py()
    assert gates == len(summary["batches"])

    # the same run again: its completion markers say every batch is done, so nothing is asked or added
    asked = len(server.bodies)
    rerun = asyncio.run(prompts_flow(cfg, "2026-11-20"))
    assert len(server.bodies) == asked and rerun["resumed_batches"] > 0
    assert sorted(map(str, rerun["batches"])) == sorted(map(str, summary["batches"]))
    again = catalog.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM prompts").to_pylist()[0]
    assert again == {"n": len(rows), "ids": len(rows)}


def test_a_later_night_reuses_the_published_topic_tree(tmp_path, server, prefect_harness):
    asyncio.run(prompts_flow(config(tmp_path, server.base_url), "2026-11-20"))
    asked = asked_for_topics(server)
    assert asked == 3  # one macro list, then subtopics of 2 macro topics

    reuse = config(tmp_path, server.base_url, reuse_published=True)
    asyncio.run(prompts_flow(reuse, "2026-11-21"))
    assert asked_for_topics(server) == asked  # no new topic requests
    catalog = Catalog(reuse.lake)
    topic_dates = catalog.query("SELECT DISTINCT run_date::VARCHAR AS d FROM topics").column("d").to_pylist()
    assert topic_dates == ["2026-11-20"]
    topics = set(catalog.query("SELECT DISTINCT topic FROM topics WHERE subtopic IS NOT NULL").column("topic").to_pylist())
    later = set(catalog.query("SELECT DISTINCT topic FROM prompts WHERE run_date = '2026-11-21' AND task_type = 'open_qa'")
                .column("topic").to_pylist())
    assert later and later <= topics


PROMPT_COLUMNS = "id, task_type, topic, messages, instruction_ids, turn_form, batch_id"


def test_a_local_dask_cluster_gives_the_prompts_of_the_default_runner(tmp_path, prefect_harness):
    """The stage's batch tasks (questions, instruction prompts, two-turn) on a two-process LocalCluster."""
    from flows.cluster import cluster_scope

    for side in ("plain", "dask"):
        (tmp_path / side).mkdir()
    with FakeOpenAIServer(latency_s=0.01, answer=keyed_lists(items=4)) as keyed:
        plain = config(tmp_path / "plain", keyed.base_url)
        asyncio.run(prompts_flow(plain, "2026-11-20"))
        plain_requests = len(keyed.bodies)
        spread = config(tmp_path / "dask", keyed.base_url).model_copy(
            update={"cluster": ClusterConfig(local={"n_workers": 2})})

        async def on_the_cluster():
            async with cluster_scope(spread.cluster) as cluster:
                await prompts_flow(spread, "2026-11-20")
                return list(cluster.ran_on)

        ran_on = asyncio.run(on_the_cluster())
        assert len(keyed.bodies) == 2 * plain_requests  # the same requests, no more

    def made(cfg):
        return Catalog(cfg.lake).query(f"SELECT {PROMPT_COLUMNS} FROM prompts ORDER BY id").to_pylist()

    rows = made(plain)
    assert len(rows) == 35
    # the same prompts word for word (batch ids carry the config's fingerprint: the lake's root differs)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "batch_id"} for r in rs]  # noqa: E731
    assert strip(made(spread)) == strip(rows)
    names = sorted(name for name, _, _ in ran_on)
    assert "questions-open_qa-00000" in names and "two-turn-two_turn-00000" in names
    assert any(n.startswith("instruction-following-instruction_following-open_qa-") for n in names)
    assert os.getpid() not in {pid for _, _, pid in ran_on}
