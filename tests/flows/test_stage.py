"""The stage skeleton every stage shares: the parse guard, list answers that count their losses,
one drop ledger for generation and gate drops, engines closed once by the outermost scope."""

import asyncio

import duckdb

from engines.config import ModelSpec
from engines.registry import engine_scope, get_chat_engine, open_engines, usage_since, usage_snapshot
from engines.scripted import ScriptedChatEngine
from storage.catalog import Catalog
from storage.config import LakeConfig
from storage.lake import Lake
from tasks.llm_step import run_llm_step
from tasks.prompts.common import list_items


def test_a_parser_that_raises_costs_its_item_not_the_batch():
    engine = ScriptedChatEngine(lambda request: request.messages[0]["content"])

    def parse(item, text):
        if item == "bad":
            raise ZeroDivisionError("division by zero")
        return [{"text": text}]

    out = asyncio.run(run_llm_step(engine, ["a", "bad", "b"], lambda item: _request(item), parse))
    assert [r["text"] for r in out.rows] == ["a", "b"]
    assert len(out.drops) == 1
    assert out.drops[0].reason == "parser_error: ZeroDivisionError: division by zero"
    assert out.drops[0].raw == "bad"  # the raw text is kept


def _request(text):
    from engines.types import ChatRequest

    return ChatRequest(messages=[{"role": "user", "content": text}])


def test_list_answers_count_the_items_they_leave_out():
    answer = list_items("1. Tides\n2. tides\n3. Moons\n4. Comets\n5. Stars", expected=2)
    assert answer.items == ["Tides", "Moons"]
    lost = {d.reason: d.count for d in answer.lost}
    assert lost == {"list_duplicate_items": 1, "list_items_past_count": 2}

    async def parse_step():
        engine = ScriptedChatEngine(lambda request: "1. Tides\n2. tides\n3. Moons")

        def parse(item, text):
            from tasks.llm_step import Parsed

            found = list_items(text, 5)
            return Parsed([{"t": t} for t in found.items], found.lost)

        return await run_llm_step(engine, ["x"], _request, parse)

    out = asyncio.run(parse_step())
    assert len(out.rows) == 2 and out.drop_counts() == {"list_duplicate_items": 1}


def test_generation_and_gate_drops_share_one_ledger(tmp_path):
    config = LakeConfig(root=str(tmp_path / "lake"))
    catalog = Catalog(config, Lake(config))
    catalog.record_step_drops("r1", "prompts", "open_qa", {"no_list_found": 2, "refusal": 1})
    catalog.record_step_drops("r1", "prompts", "open_qa", {"no_list_found": 3})  # a retry replaces, never adds
    catalog.record_gate_drops("r1", "prompts", "prompts", "b-1", {"near_duplicate": 4})
    rows = catalog.query("SELECT run_id, stage, step, dataset, batch_id, reason, count FROM drops ORDER BY step").to_pylist()
    assert rows == [
        {"run_id": "r1", "stage": "prompts", "step": "gate", "dataset": "prompts", "batch_id": "b-1",
         "reason": "near_duplicate", "count": 4},
        {"run_id": "r1", "stage": "prompts", "step": "open_qa", "dataset": None, "batch_id": None,
         "reason": "no_list_found", "count": 3},
    ]


def test_a_catalog_from_before_the_ledger_keeps_its_drop_counts(tmp_path):
    config = LakeConfig(root=str(tmp_path / "lake"))
    Lake(config)
    path = str(tmp_path / "lake" / "catalog.duckdb")
    with duckdb.connect(path) as conn:  # the old layout: batch_id held the step for generation drops
        conn.execute("CREATE TABLE drops (run_id VARCHAR, batch_id VARCHAR, stage VARCHAR, reason VARCHAR, "
                     "count BIGINT, PRIMARY KEY (run_id, batch_id, stage, reason))")
        conn.execute("INSERT INTO drops VALUES ('r0', 'prompts-math-generation', 'prompts', 'refusal', 2), "
                     "('r0', 'b-9', 'gate:prompts', 'too_short', 5)")
    catalog = Catalog(config)
    catalog.record_step_drops("r1", "prompts", "topics", {"empty": 1})
    rows = catalog.query("SELECT run_id, stage, step, dataset, batch_id, reason, count FROM drops "
                         "ORDER BY run_id, step").to_pylist()
    assert rows[0] == {"run_id": "r0", "stage": None, "step": "gate", "dataset": "prompts", "batch_id": "b-9",
                       "reason": "too_short", "count": 5}
    assert rows[1] == {"run_id": "r0", "stage": "prompts", "step": "math", "dataset": None, "batch_id": None,
                       "reason": "refusal", "count": 2}
    assert rows[2]["run_id"] == "r1"


def test_engines_close_once_when_the_outermost_scope_ends():
    registry = {"served": ModelSpec(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")}

    async def night():
        async with engine_scope():
            async with engine_scope():  # the first stage
                first = get_chat_engine("served", registry)
            assert ("chat", "served") in open_engines()  # still open for the next stage
            async with engine_scope():  # the second stage reuses it
                assert get_chat_engine("served", registry) is first
        assert open_engines() == {}

    asyncio.run(night())


def test_usage_since_charges_a_stage_only_its_own_requests():
    from engines import registry as reg

    engine = ScriptedChatEngine(lambda request: "four words right here")
    reg._engines[("chat", "scripted-usage")] = engine
    try:
        asyncio.run(engine.chat([_request("a")]))
        before = usage_snapshot()
        asyncio.run(engine.chat([_request("b"), _request("c")]))
        spent = usage_since(before)
        assert spent[("scripted", "scripted")].requests == 2
        assert spent[("scripted", "scripted")].completion_tokens == 8
    finally:
        reg._engines.pop(("chat", "scripted-usage"))
