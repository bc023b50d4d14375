"""deployments/prefect.yaml for real: a Prefect server, process work pools, `prefect deploy --all`,
a run of the quickstart deployment with a small config, and a worker that executes it."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmarks.servers.fake_openai import FakeOpenAIServer, varied_lists
from flows.config import load_config
from storage.catalog import Catalog

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/prefect.db",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "COLUMNS": "300"}  # rich tables of the CLI, unabridged
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"prefect server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield env
    server.terminate()
    server.wait(30)
    log.close()


def prefect(env, *args, timeout=300) -> str:
    done = subprocess.run([*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_quickstart_deployment_runs_on_a_process_worker(tmp_path, prefect_server):
    env = {**prefect_server, "SDG_HOME": str(REPO)}
    with FakeOpenAIServer(latency_s=0.01, answer=varied_lists(items=3, seed=5)) as llm:
        run_config = tmp_path / "run.yaml"
        run_config.write_text(json.dumps({
            "name": "deployed", "lake": {"root": str(tmp_path / "lake")},
            "models": {"fake": {"backend": "openai", "base_url": llm.base_url, "model": "fake"}},
            "prompts": {"generator": "fake", "topics": {"macro_topics": 1, "subtopics_per_topic": 2},
                        "writing": {"enabled": False}, "math": {"enabled": False},
                        "instruction_following": {"count": 2}, "two_turn": {"count": 0}},
        }))
        for pool in ("gpu", "cpu"):  # the pools prefect.yaml names
            prefect(env, "work-pool", "create", pool, "--type", "process")
        out = prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        assert "nightly/nightly" in out and "nightly/quickstart" in out

        listed = prefect(env, "deployment", "inspect", "nightly/nightly")
        assert "0 2 * * *" in listed and "deployments/nightly.yaml" in listed

        prefect(env, "deployment", "run", "nightly/quickstart", "--param", f"config_file={run_config}",
                "--param", "run_date=2026-11-21")
        prefect(env, "worker", "start", "--pool", "cpu", "--run-once", timeout=600)
        runs = prefect(env, "flow-run", "ls", "--state", "COMPLETED")
        assert "nightly" in runs and "prompts" in runs, runs  # the flow and its stage subflow

    catalog = Catalog(load_config(run_config).lake)
    rows = catalog.query("SELECT task_type, count(*) AS n FROM prompts GROUP BY ALL").to_pylist()
    per_type = {r["task_type"]: r["n"] for r in rows}
    assert per_type == {"open_qa": 4, "coding": 4, "instruction_following": 2}, per_type
    dates = catalog.query("SELECT DISTINCT run_date::VARCHAR AS d FROM prompts").column("d").to_pylist()
    assert dates == ["2026-11-21"]
