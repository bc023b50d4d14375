"""The prompts stage end to end on the embedded default model: topics and prompts land in the
lake through the gate, and `sdg sql` reads them back with every task type present."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import parse_config
from flows.prompts import prompts_flow

pytestmark = pytest.mark.slow

TASK_TYPES = {"open_qa", "writing", "closed_qa", "math", "coding", "instruction_following", "two_turn", "seed"}


def small_run(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"q": q}) for q in ["How do I keep basil fresh?", "What is a prime number?"]))
    doc = tmp_path / "doc.txt"
    doc.write_text("The city library opens at nine and closes at six. Children's books are on the second floor.")
    return parse_config(
        {
            "name": "e2e",
            "seed": 11,
            "lake": {"root": str(tmp_path / "lake")},
            "models": {"default": {"sampling": {"max_tokens": 96}, "batch_size": 32}},
            "prompts": {
                "max_tokens": 96,
                "temperature": 0.3,
                "topics": {"macro_topics": 0, "subtopics_per_topic": 0, "user_topics": ["cooking"]},
                "open_qa": {"per_topic": 2},
                "writing": {"per_topic": 1, "text_types": ["email"]},
                "math": {"per_topic": 2, "levels": ["elementary"]},
                "coding": {"per_topic": 2},
                "closed_qa": {"documents": [{"path": str(doc)}], "per_document": 2},
                "instruction_following": {"count": 3},
                "two_turn": {"count": 1},
                "seeds": {"sources": [{"path": str(seeds), "prompt_column": "q"}]},
            },
            # the 135M model repeats itself: keep near-dup removal from eating a tiny batch
            "quality": {"prompts": {"near_dedup": False, "min_acceptance_rate": 0.0}},
        }
    )


def test_prompts_stage_lands_every_task_type(tmp_path, prefect_harness):
    config = small_run(tmp_path)
    summary = asyncio.run(prompts_flow(config, "2026-11-20"))
    assert summary["rows"] > 0
    assert all(b["state"] == "published" for b in summary["batches"]), summary["batches"]

    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))
    result = CliRunner().invoke(
        app, ["sql", "-c", str(config_file), "--format", "json",
              "SELECT task_type, count(*) AS n FROM prompts GROUP BY task_type"],
    )
    assert result.exit_code == 0, result.output
    counts = {r["task_type"]: r["n"] for r in json.loads(result.stdout)}
    # The 135M model mostly answers, or hands back our request, where a two-turn follow-up belongs:
    # the user-turn guard drops those, so a two-turn prompt is either published or a recorded drop.
    result = CliRunner().invoke(app, ["sql", "-c", str(config_file), "--format", "json",
                                      "SELECT reason, sum(count)::BIGINT AS n FROM drops WHERE reason LIKE 'follow_up_%' "
                                      "GROUP BY ALL"])
    follow_up_drops = sum(r["n"] for r in json.loads(result.stdout))
    assert counts.get("two_turn", 0) + follow_up_drops == config.prompts.two_turn.count, (counts, follow_up_drops)
    # and it sometimes answers a writing task where its revision belongs: published or a recorded drop
    result = CliRunner().invoke(app, ["sql", "-c", str(config_file), "--format", "json",
                                      "SELECT sum(count)::BIGINT AS n FROM drops WHERE step LIKE 'writing-%-revise' "
                                      "AND reason LIKE 'revision_%'"])
    revision_drops = json.loads(result.stdout)[0]["n"] or 0
    assert counts.get("writing", 0) + revision_drops == 1, (counts, revision_drops)
    assert set(counts) | {"two_turn", "writing"} == TASK_TYPES, counts
    result = CliRunner().invoke(app, ["sql", "-c", str(config_file), "--format", "json", "SELECT count(*) AS n FROM topics"])
    assert json.loads(result.stdout)[0]["n"] == 1  # the user topic

    # a rerun of the same night overwrites the same batches: no row is added twice
    asyncio.run(prompts_flow(config, "2026-11-20"))
    result = CliRunner().invoke(app, ["sql", "-c", str(config_file), "--format", "json",
                                      "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM prompts"])
    again = json.loads(result.stdout)[0]
    assert again["n"] == sum(counts.values())
