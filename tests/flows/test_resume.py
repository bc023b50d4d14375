"""Resume: a dialogues run killed with SIGKILL after some batches are published, started again with the
same run id, skips the batches its completion markers say are finished, redoes the rest, and ends with
exactly the rows of an uninterrupted run; no finished batch is generated twice."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.servers.fake_openai import FakeOpenAIServer
from flows.config import parse_config
from flows.dialogues import dialogues_flow
from storage.lake import batch_id
from tests.flows.published import publish_prompts
from tests.flows.test_dialogues_flow import answer

RUN_DATE = "2026-11-22"
PROMPTS = [{"id": f"q{i:02d}", "task_type": "open_qa",
            "messages": [{"role": "user", "content": f"Question {i}: how do {w} work?"}]}
           for i, w in enumerate(["tides", "kites", "locks", "clocks", "bees", "lenses", "tyres", "ovens"])]
CHILD = """
import asyncio, json, sys
from flows.config import parse_config
from flows.dialogues import dialogues_flow
asyncio.run(dialogues_flow(parse_config(json.load(open(sys.argv[1]))), sys.argv[2]))
"""


def config(root, base_url):
    return parse_config({
        "name": "resume", "seed": 2, "lake": {"root": str(root)},
        "models": {"served": {"backend": "openai", "base_url": base_url, "model": "fake", "concurrency": 4},
                   "grader": {"kind": "reward", "backend": "llm-judge", "judge": "served"}},
        "prompts": {"enabled": False},
        "dialogues": {"enabled": True, "rounds": 3, "assistant": {"model": "served"}, "reward": "grader",
                      "batch_size": 2, "batches_in_flight": 1},
        "quality": {"dialogues": {"near_dedup": False}},
    })


def killed_after(child_code: str, cfg, tmp_path, stage: str, pattern: str, count: int) -> list[str]:
    """Run `child_code` on `cfg` in a child process, SIGKILL it once `count` completion markers match
    `pattern`, and return the names of every marker it left."""
    from prefect.settings import PREFECT_API_URL

    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    markers = Path(cfg.lake.root) / "runs" / f"resume-{stage}-{RUN_DATE}" / "done"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": os.getcwd()}
    # its own process group: the kill takes the run and its gate worker down together, as a crashed pod would
    child = subprocess.Popen([sys.executable, "-c", child_code, str(config_file), RUN_DATE], env=env,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(list(markers.glob(pattern))) < count:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"no {count} batches finished in time"
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return sorted(p.stem for p in markers.glob("*.pkl"))


def asked_about(bodies) -> set[str]:
    """The prompts whose dialogue a request belongs to (the first user turn names the question)."""
    found = set()
    for body in bodies:
        text = json.dumps(body)
        found |= {p["id"] for p in PROMPTS if p["messages"][0]["content"] in text}
    return found


def dialogue_ids(catalog):
    rows = catalog.query("SELECT id, batch_id FROM dialogues ORDER BY id").to_pylist()
    return [r["id"] for r in rows], sorted({r["batch_id"] for r in rows})


def test_a_killed_run_resumes_without_duplicates_or_regeneration(tmp_path, prefect_harness):
    with FakeOpenAIServer(latency_s=0.05, answer=answer) as server:
        clean_cfg = config(tmp_path / "clean", server.base_url)
        clean = publish_prompts(clean_cfg, PROMPTS, RUN_DATE)
        asyncio.run(dialogues_flow(clean_cfg, RUN_DATE))
        expected = dialogue_ids(clean)
        assert len(expected[0]) == len(PROMPTS)

        cfg = config(tmp_path / "killed", server.base_url)
        catalog = publish_prompts(cfg, PROMPTS, RUN_DATE)
        before = len(server.bodies)
        finished = killed_after(CHILD, cfg, tmp_path, "dialogues", "*.pkl", 2)
        assert 2 <= len(finished) < 4, finished  # killed mid-run, not after it

        rerun_from = len(server.bodies)
        summary = asyncio.run(dialogues_flow(cfg, RUN_DATE))  # the same run id: the same config and date
        assert summary["resumed_batches"] == len(finished)
        finished_prompts = {p["id"] for s in finished for p in PROMPTS[int(s) * 2 : int(s) * 2 + 2]}
        assert asked_about(server.bodies[before:rerun_from]) >= finished_prompts  # the killed run made them
        assert not asked_about(server.bodies[rerun_from:]) & finished_prompts  # and the rerun did not again

    ids, batches = dialogue_ids(catalog)
    assert ids == expected[0] and len(ids) == len(set(ids))  # the same rows as the uninterrupted run
    # one batch per shard, none missing, none twice (ids carry the config's fingerprint, so the lake's root)
    run_id = f"resume-dialogues-{RUN_DATE}"
    assert batches == sorted(batch_id(run_id, "dialogues", f"dialogues-{i:05d}-0", cfg.fingerprint()) for i in range(4))
    assert len(expected[1]) == 4
    assert summary["dialogues"] == len(PROMPTS)


PROMPTS_CHILD = """
import asyncio, json, sys
from flows.config import parse_config
from flows.prompts import prompts_flow
asyncio.run(prompts_flow(parse_config(json.load(open(sys.argv[1]))), sys.argv[2]))
"""


QUESTIONS = {"open_qa", "writing", "math", "coding"}


def prompts_config(root, base_url):
    return parse_config({
        "name": "resume", "lake": {"root": str(root)},
        "models": {"fake": {"backend": "openai", "base_url": base_url, "model": "fake", "concurrency": 2}},
        "prompts": {"generator": "fake", "batch_size": 2,
                    "topics": {"macro_topics": 3, "subtopics_per_topic": 2},
                    "open_qa": {"per_topic": 1}, "writing": {"per_topic": 1, "text_types": ["email"]},
                    "math": {"per_topic": 1, "levels": ["elementary"]}, "coding": {"per_topic": 1},
                    "instruction_following": {"count": 6}, "two_turn": {"count": 0}},
    })


def test_a_killed_prompts_run_resumes_without_duplicates_or_regeneration(tmp_path, prefect_harness):
    from benchmarks.servers.fake_openai import keyed_lists
    from storage.catalog import Catalog

    def prompt_rows(cfg):
        return Catalog(cfg.lake).query("SELECT id, batch_id, seed FROM prompts ORDER BY id").to_pylist()

    with FakeOpenAIServer(latency_s=0.05, answer=keyed_lists(items=3)) as server:
        clean_cfg = prompts_config(tmp_path / "clean", server.base_url)
        from flows.prompts import prompts_flow

        clean = asyncio.run(prompts_flow(clean_cfg, RUN_DATE))
        expected = prompt_rows(clean_cfg)
        assert len(expected) == clean["rows"] > 20

        cfg = prompts_config(tmp_path / "killed", server.base_url)
        # some question batches, past the topics and seeds
        finished = killed_after(PROMPTS_CHILD, cfg, tmp_path, "prompts", "*-*.pkl", 3)
        markers = Path(cfg.lake.root) / "runs" / f"resume-prompts-{RUN_DATE}" / "done"
        assert len(finished) < len(clean["batches"]), finished  # killed mid-run, not after it

        # the seeds of the requests that made the finished question batches' rows (each row carries its
        # request's; instruction prompts carry their base question's, which may be asked again)
        import pickle
        finished_seeds = {row["seed"] for p in markers.glob("*.pkl") if p.stem.split("-")[0] in QUESTIONS
                          for row in pickle.loads(p.read_bytes())["result"]}
        assert finished_seeds
        rerun_from = len(server.bodies)
        summary = asyncio.run(prompts_flow(cfg, RUN_DATE))
        assert summary["resumed_batches"] == len(finished)
        rerun_seeds = {body.get("seed") for body in server.bodies[rerun_from:]}
        assert rerun_seeds and not rerun_seeds & finished_seeds  # no finished batch was asked for again

    rows = prompt_rows(cfg)
    assert [r["id"] for r in rows] == [r["id"] for r in expected]  # the rows of the uninterrupted run
    assert len({r["id"] for r in rows}) == len(rows)
    # every batch once: those the rerun found finished and those it made, none missing, none twice
    published = [b["batch_id"] for b in summary["batches"] if b["dataset"] == "prompts" and b["rows_out"]]
    assert sorted({r["batch_id"] for r in rows}) == sorted(published)
    assert len(published) == len({b["batch_id"] for b in clean["batches"] if b["dataset"] == "prompts" and b["rows_out"]})
