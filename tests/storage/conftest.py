"""Lakes for the storage tests: a local folder, and S3 through a real moto_server on loopback."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from storage.config import LakeConfig

S3_KEYS = {"key": "testing", "secret": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def make_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def lake_config(request, tmp_path) -> LakeConfig:
    if request.param == "local":
        return LakeConfig(root=str(tmp_path / "lake"))
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = make_bucket(endpoint)
    return LakeConfig(root=f"s3://{bucket}/sdg", catalog=str(tmp_path / "catalog.duckdb"),
                      storage_options={"endpoint_url": endpoint, **S3_KEYS})


@pytest.fixture
def config_file(lake_config, tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"lake": lake_config.model_dump()}))
    return path


def preference_rows(batch: str, count: int, start: int = 0, run_id: str = "run-1") -> list[dict]:
    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(start, start + count):
        rows.append({
            "id": f"pair-{i}", "prompt_id": f"prompt-{i}",
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"What is {i} + 1?"}],
            "chosen": [{"role": "assistant", "content": f"{i + 1}"}],
            "rejected": [{"role": "assistant", "content": f"{i + 2}"}],
            "judge": "ground_truth", "chosen_reward": 3.0 + (i % 2), "rejected_reward": 1.0, "margin": 2.0 + (i % 2),
            "chosen_attributes": {"helpfulness": 3.6, "correctness": 4.0, "coherence": 4.0, "complexity": 1.2, "verbosity": 0.6},
            "rejected_attributes": {"helpfulness": 1.0, "correctness": 0.2, "coherence": 3.0, "complexity": 1.0, "verbosity": 0.4},
            "chosen_model": "a", "rejected_model": "b",
            "run_id": run_id, "batch_id": batch, "stage": "preferences", "model": "a", "backend": "fake",
            "sampling": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": i},
            "template_id": "pref", "template_version": "1", "seed": 0, "created_at": now,
        })
    return rows


def dialogue_rows(batch: str, count: int) -> list[dict]:
    now = dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)
    good = {"helpfulness": 4.0, "correctness": 4.0, "coherence": 4.0, "complexity": 2.0, "verbosity": 2.0}
    return [{
        "id": f"dialogue-{i}", "prompt_id": f"prompt-{i}", "persona": "a curious student",
        "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
                     {"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Scattering."}],
        "turn_attributes": [good, {**good, "helpfulness": 2.6}], "turn_rewards": [3.0, 2.5], "reward": 2.5 + i,
        "run_id": "run-1", "batch_id": batch, "stage": "dialogues", "created_at": now,
    } for i in range(count)]
