"""The stages' batch tasks on prefect-dask's DaskTaskRunner: the dialogues stage over a real
OpenAI-compatible server on loopback, once on the default runner and once on a real two-process
`distributed.LocalCluster`, gives the same dialogues and the same drops ledger; the batches ran in the
workers' processes, whose engines served batch after batch; a scheduler that cannot be reached fails the
run before any model request, naming `cluster.address`."""

import asyncio
import json
import os

import pytest

from engines.registry import engine_scope, get_chat_engine, open_engines
from flows import on_worker
from flows.cluster import ClusterError, cluster_scope, models_key
from flows.config import ConfigError
from flows.dialogues import dialogues_flow
from tests.flows.published import publish_prompts
from tests.flows.test_dialogues_flow import PROMPTS, RUN_DATE, server  # noqa: F401 - server is a fixture
from tests.flows.test_dialogues_flow import config as dialogues_config

COLUMNS = "id, prompt_id, persona, messages, turn_rewards, reward, source"


def config(root, base_url, **extra):
    return dialogues_config(root, base_url, batch_size=1, **extra)  # four batches: more than the workers


def made(catalog):
    rows = catalog.query(f"SELECT {COLUMNS} FROM dialogues ORDER BY id").to_pylist()
    ledger = catalog.query("SELECT step, reason, CAST(sum(count) AS INT) AS n FROM drops WHERE stage = 'dialogues' "
                           "GROUP BY ALL ORDER BY ALL").to_pylist()
    usage = catalog.query("SELECT model, CAST(sum(requests) AS INT) AS requests FROM usage WHERE run_id = 'talk-dialogues-2026-11-21' "
                          "GROUP BY ALL ORDER BY ALL").to_pylist()
    return rows, ledger, usage


def test_a_local_dask_cluster_gives_the_rows_of_the_default_runner(tmp_path, server, prefect_harness):
    plain = config(tmp_path / "plain", server.base_url)
    plain_catalog = publish_prompts(plain, PROMPTS, RUN_DATE)
    asyncio.run(dialogues_flow(plain, RUN_DATE))
    plain_requests = len(server.bodies)

    spread = config(tmp_path / "dask", server.base_url, cluster={"local": {"n_workers": 2, "processes": True}})
    spread_catalog = publish_prompts(spread, PROMPTS, RUN_DATE)

    async def on_the_cluster():
        async with cluster_scope(spread.cluster) as cluster:  # as a nightly run holds it: the stage joins it
            summary = await dialogues_flow(spread, RUN_DATE)
            return summary, list(cluster.ran_on), dict(cluster.worker_pids)

    summary, ran_on, worker_pids = asyncio.run(on_the_cluster())
    assert summary["dialogues"] == 3 and summary["drops"] == {"low_turn_reward": 1}

    rows, ledger, usage = made(plain_catalog)
    assert len(rows) == 3 and ledger == [{"step": "role-play-00001", "reason": "low_turn_reward", "n": 1}]
    assert made(spread_catalog)[:2] == (rows, ledger)  # the same dialogues, word for word, and the same drops
    drops_file = tmp_path / "dask/lake/runs/talk-dialogues-2026-11-21/drops/role-play-00001.jsonl"
    assert json.loads(drops_file.read_text())["reason"] == "low_turn_reward"  # written by the flow process

    # every batch ran in a worker process of the cluster, not in this one
    assert sorted(name for name, _, _ in ran_on) == [f"role-play-{i:05d}" for i in range(4)]
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids.values()
    assert {(worker, pid) for _, worker, pid in ran_on} <= set(worker_pids.items())
    # the workers' engines served batch after batch (four batches, two processes), and the stage's cost
    # record holds every request they made, counted in the workers
    spread_requests = len(server.bodies) - plain_requests
    assert spread_requests == plain_requests
    assert made(spread_catalog)[2] == usage and {"model": "fake", "requests": plain_requests} in usage
    # and the `sdg run` display's tokens hold the workers' tokens (the flow process made no request)
    from flows.progress import PROGRESS

    shown = next(p.tokens for p in PROGRESS.snapshot() if p.stage == "dialogues")
    spent = spread_catalog.query("SELECT sum(completion_tokens)::BIGINT AS n FROM usage "
                                 "WHERE run_id = 'talk-dialogues-2026-11-21'").to_pylist()[0]["n"]
    assert shown == spent > 0


def test_an_unreachable_scheduler_fails_the_run_before_any_model_request(tmp_path, server, prefect_harness):
    cfg = config(tmp_path, server.base_url, cluster={"address": "tcp://127.0.0.1:1", "connect_timeout_s": 2})
    catalog = publish_prompts(cfg, PROMPTS, RUN_DATE)
    with pytest.raises(ClusterError, match=r"^cluster\.address: no Dask scheduler answers at tcp://127\.0\.0\.1:1 .*allowed:"):
        asyncio.run(dialogues_flow(cfg, RUN_DATE))
    assert server.bodies == []
    assert catalog.query("SELECT count(*) AS n FROM runs WHERE run_id LIKE 'talk-dialogues%'").to_pylist() == [{"n": 0}]


def test_a_cluster_is_one_of_address_local_cuda(tmp_path):
    with pytest.raises(ConfigError, match=r"cluster\.address: .*'8786' is not a Dask scheduler address; allowed: "):
        config(tmp_path, "http://x/v1", cluster={"address": "8786"})
    with pytest.raises(ConfigError, match=r"cluster: .*set exactly one of address, local, cuda \(got address and local\)"):
        config(tmp_path, "http://x/v1", cluster={"address": "tcp://h:8786", "local": {}})
    assert config(tmp_path, "http://x/v1", cluster={"address": "10.0.0.5:8786"}).cluster.address == "tcp://10.0.0.5:8786"


def test_a_cuda_cluster_without_dask_cuda_says_what_to_install(tmp_path):
    pytest.importorskip("distributed")
    try:
        import dask_cuda  # noqa: F401
        pytest.skip("dask-cuda is installed here")
    except ImportError:
        pass
    cfg = config(tmp_path, "http://x/v1", cluster={"cuda": {"CUDA_VISIBLE_DEVICES": "0"}})

    async def start():
        async with cluster_scope(cfg.cluster):
            pass

    with pytest.raises(ClusterError, match=r"cluster\.cuda\.cluster_class: cannot import 'dask_cuda\.LocalCUDACluster'.*pip install dask-cuda"):
        asyncio.run(start())


def test_a_worker_keeps_its_engines_until_a_batch_of_other_models_comes(tmp_path, monkeypatch):
    monkeypatch.setattr(on_worker, "_engines_models", None)  # as in a fresh worker process
    first = config(tmp_path, "http://127.0.0.1:9/v1").models
    other = config(tmp_path, "http://127.0.0.1:10/v1").models

    async def batches():
        async with engine_scope():
            engine = get_chat_engine("served", first)
            for _ in range(2):
                await on_worker.fresh_engines(models_key(first))
                assert open_engines() == {("chat", "served"): engine}  # reused, batch after batch
            await on_worker.fresh_engines(models_key(other))
            assert open_engines() == {}  # closed: the next batch builds them from its own models

    asyncio.run(batches())
