"""The prompts flow against a real OpenAI-compatible server on loopback (fresh list answers):
part-by-part landing, the instruction-following quota, the mix in gate reports, reuse of a
published topic tree, and a rerun that duplicates nothing."""

import asyncio
import json
from collections import Counter

import pytest

from benchmarks.servers.fake_openai import FakeOpenAIServer, varied_lists
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

    asyncio.run(prompts_flow(cfg, "2026-11-20"))  # the same night again: same batch ids, overwritten
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
