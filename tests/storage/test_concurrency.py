"""Two processes landing different batches of one dataset at the same time, on one catalog."""

import multiprocessing as mp

from storage.catalog import Catalog
from storage.config import LakeConfig
from storage.lake import Lake, batch_id
from tests.storage.conftest import preference_rows

BATCHES_PER_WORKER = 8
ROWS_PER_BATCH = 25


def land_batches(config_json: str, worker: int) -> None:
    config = LakeConfig.model_validate_json(config_json)
    lake = Lake(config)
    catalog = Catalog(config, lake)
    run_id = f"run-{worker}"
    catalog.record_run(run_id, "concurrency", "fp")
    for shard in range(BATCHES_PER_WORKER):
        bid = batch_id(run_id, "preferences", shard, "fp")
        start = (worker * BATCHES_PER_WORKER + shard) * ROWS_PER_BATCH
        staged = lake.stage_batch("preferences", "2025-01-02", bid, preference_rows(bid, ROWS_PER_BATCH, start, run_id))
        catalog.record_batch(staged, "staged", run_id)
        catalog.record_batch(staged, "published", run_id, lake.publish(staged))
        catalog.record_usage(run_id, "a", "fake", {"requests": 2, "prompt_tokens": 10, "completion_tokens": 5})
        catalog.refresh_views()
        catalog.query("SELECT count(*) FROM preferences")  # readers interleave with the other writer
    catalog.finish_run(run_id)


def test_two_processes_land_every_row_once(lake_config):
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=land_batches, args=(lake_config.model_dump_json(), w)) for w in range(2)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=240)
    assert [proc.exitcode for proc in workers] == [0, 0]

    catalog = Catalog(lake_config)
    catalog.refresh_views()
    total = 2 * BATCHES_PER_WORKER * ROWS_PER_BATCH
    counts = catalog.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM preferences").to_pylist()
    assert counts == [{"n": total, "ids": total}]
    batches = catalog.query("SELECT state, count(*) AS n, sum(rows)::BIGINT AS rows FROM batches GROUP BY state").to_pylist()
    assert batches == [{"state": "published", "n": 2 * BATCHES_PER_WORKER, "rows": total}]
    usage = catalog.query("SELECT run_id, requests FROM usage ORDER BY run_id").to_pylist()
    assert usage == [{"run_id": "run-0", "requests": 16}, {"run_id": "run-1", "requests": 16}]
    assert catalog.query("SELECT count(*) AS n FROM runs WHERE status = 'completed'").to_pylist() == [{"n": 2}]


def test_a_catalog_pickled_during_a_write_travels_without_its_connection(lake_config):
    """A Dask batch's run context is pickled in another thread while the flow's loop writes to the
    catalog: the copy must not carry that write's connection (DuckDB's cannot be pickled)."""
    import pickle

    catalog = Catalog(lake_config)
    with catalog.writing():
        copy = pickle.loads(pickle.dumps(catalog))
    assert copy._conn is None
    copy.record_step_drops("r1", "prompts", "step", {"reason": 2})  # and it writes on its own connection
    assert catalog.query("SELECT sum(count)::INT AS n FROM drops").to_pylist() == [{"n": 2}]
