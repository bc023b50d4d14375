"""The openai engine against a real `transformers serve` on loopback, serving the tiny chat model.

`transformers serve` honours max_tokens and seed, ignores n (the engine tops up), and accepts
only the path it serves as the model name.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from engines.config import ModelSpec
from engines.judge_reward import LLMJudgeRewardEngine
from engines.openai_chat import OpenAIChatEngine
from engines.tiny import build_tiny_models
from engines.types import ChatRequest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STARTUP_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"transformers serve not healthy after {STARTUP_S}s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    """(base_url, model path) of a `transformers serve` running the tiny chat model."""
    root = tmp_path_factory.mktemp("tiny-models")
    model_dir = str(build_tiny_models(root)["chat"])
    port = free_port()
    cli = Path(sys.executable).with_name("transformers")
    log = root / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [str(cli), "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}/v1", model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def make_engine(served_model, model: str | None = None) -> OpenAIChatEngine:
    base_url, model_dir = served_model
    spec = ModelSpec(
        backend="openai",
        base_url=base_url,
        model=model or model_dir,
        concurrency=4,
        timeout_s=60,
        max_retries=1,
        sampling={"temperature": 1.0, "top_p": 1.0, "max_tokens": 8},
    )
    return OpenAIChatEngine("tiny", spec, backoff_base_s=0.05)


def chat(served_model, requests, model: str | None = None):
    async def go():
        engine = make_engine(served_model, model)
        try:
            return await engine.chat(requests), engine
        finally:
            await engine.aclose()

    return asyncio.run(go())


def ask(text: str, **fields) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **fields)


def test_batch_answers_in_order_with_usage_and_max_tokens(served_model):
    results, engine = chat(served_model, [ask(f"Tell me about topic {i}.", max_tokens=4 + i) for i in range(3)])
    assert all(r.ok for r in results), [r.error for r in results]
    assert all(isinstance(r.text, str) for r in results)
    for i, result in enumerate(results):
        assert 0 < result.completion_tokens <= 4 + i  # max_tokens honoured
        assert result.completions[0].finish_reason in ("length", "stop")
    assert engine.usage.requests == 3 and engine.usage.errors == 0
    assert engine.usage.completion_tokens == sum(r.completion_tokens for r in results)
    assert engine.usage.prompt_tokens > 0


def test_seed_reproduces_an_answer(served_model):
    results, _ = chat(served_model, [ask("Say something.", seed=11), ask("Say something.", seed=11)])
    assert results[0].ok and results[0].text == results[1].text


def test_n_is_topped_up_because_the_server_ignores_it(served_model):
    (result,), engine = chat(served_model, [ask("Give me ideas.", n=3, seed=5)])
    assert result.ok, result.error
    assert len(result.completions) == 3
    assert engine.server_ignores_n
    assert engine.usage.requests == 3  # the first request plus two top-ups


def test_a_wrong_model_name_is_a_clear_error_not_retried(served_model):
    base_url, _ = served_model
    (result,), engine = chat(served_model, [ask("hi")], model="not-the-served-model")
    assert not result.ok
    assert base_url in result.error and "'not-the-served-model'" in result.error
    assert "http 400 after 1 try" in result.error
    assert engine.retries == 0


def test_llm_judge_over_the_served_model_records_errors_for_noise(served_model):
    # The tiny model writes noise: every grade is an error with the raw text kept, none a crash.
    async def go():
        engine = make_engine(served_model)
        judge = LLMJudgeRewardEngine("judge", ModelSpec(kind="reward", backend="llm-judge", judge="tiny"), engine)
        conversations = [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]] * 2
        try:
            return await judge.score(conversations)
        finally:
            await engine.aclose()

    results = asyncio.run(go())
    assert len(results) == 2
    assert all(r.ok or "judge answer unusable" in r.error for r in results)
