"""The transformers chat and reward engines on the tiny models and on the embedded default model."""

from __future__ import annotations

import pytest

from engines.config import ModelSpec
from engines.tiny import build_tiny_models, build_tiny_reward_model
from engines.transformers_chat import TransformersChatEngine
from engines.transformers_reward import TransformersRewardEngine, attribute_order
from engines.types import HELPSTEER2_ATTRIBUTES, ChatEngine, ChatRequest, RewardEngine, chat_sync, score_sync


def ask(text: str, **params) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **params)


def texts(result) -> list[str]:
    return [c.text for c in result.completions]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def chat(tiny):
    return TransformersChatEngine("tiny", ModelSpec(model=str(tiny["chat"]), batch_size=3))


@pytest.fixture(scope="module")
def reward(tiny):
    return TransformersRewardEngine("tiny-rm", ModelSpec(kind="reward", model=str(tiny["reward"]), batch_size=2))


def test_engines_speak_the_protocols(chat, reward):
    assert isinstance(chat, ChatEngine) and chat.backend == "transformers"
    assert isinstance(reward, RewardEngine) and reward.backend == "transformers"


def test_n_completions_and_exact_token_counts(tiny):
    from transformers import AutoTokenizer

    # ignore_eos: every row runs to max_tokens, so the counts are known exactly.
    engine = TransformersChatEngine("tiny", ModelSpec(model=str(tiny["chat"]), batch_size=4), ignore_eos=True)
    requests = [
        ask("Why is seven prime?", n=3, temperature=1.0, seed=1, max_tokens=6),
        ask("Write a poem about rivers and the moon", n=2, temperature=0.0, max_tokens=5),
        ask("hi", n=1, temperature=0.7, max_tokens=7),
    ]
    results = chat_sync(engine, requests)
    tokenizer = AutoTokenizer.from_pretrained(tiny["chat"])
    for request, result in zip(requests, results):
        assert result.ok, result.error
        assert len(result.completions) == request.n
        assert all(c.finish_reason == "length" for c in result.completions)
        assert result.completion_tokens == request.n * request.max_tokens
        prompt = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        assert result.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert engine.usage.requests == 3
    assert engine.usage.completion_tokens == 3 * 6 + 2 * 5 + 7
    assert engine.usage.prompt_tokens == sum(r.prompt_tokens for r in results)
    assert engine.usage.errors == 0 and engine.usage.seconds > 0


def test_seed_reproduces_whatever_the_batch_mates(chat):
    seeded = ask("Tell me about prime numbers", n=2, temperature=1.0, seed=42, max_tokens=12)
    alone = chat_sync(chat, [seeded])[0]
    crowded = chat_sync(
        chat,
        [
            ask("a much longer question about rivers, poems and sorting records by date", temperature=0.9, seed=3, max_tokens=16),
            ask("x", temperature=0.0, max_tokens=3),
            seeded,
            ask("another one", n=2, temperature=1.2, top_p=0.5, max_tokens=14),
        ],
    )[2]
    assert texts(alone) == texts(crowded)
    assert texts(alone)[0] != texts(alone)[1]  # the n samples of one request are distinct draws


def test_different_seeds_differ_when_sampling(chat):
    request = dict(temperature=1.0, max_tokens=12)
    one, two = chat_sync(chat, [ask("Tell me a story", seed=1, **request), ask("Tell me a story", seed=2, **request)])
    assert texts(one) != texts(two)


def test_greedy_ignores_seeds_and_copies_its_samples(chat):
    one, two = chat_sync(
        chat, [ask("Tell me a story", temperature=0.0, seed=1, n=3, max_tokens=8), ask("Tell me a story", temperature=0.0, seed=2, max_tokens=8)]
    )
    assert len(set(texts(one))) == 1
    assert texts(one)[0] == texts(two)[0]
    assert one.completion_tokens == 3 * two.completion_tokens


def test_max_tokens_gives_length_finish(chat):
    result = chat_sync(chat, [ask("Why is seven prime?", temperature=0.0, max_tokens=4)])[0]
    assert result.completions[0].finish_reason == "length"
    assert result.completion_tokens == 4


def test_stop_string_truncates_and_finishes_with_stop(chat):
    full = chat_sync(chat, [ask("Why is seven prime?", temperature=0.0, max_tokens=24)])[0].text
    stop = full[8:11]
    cut = full.find(stop)
    assert 0 < cut and stop.strip(), f"pick another slice of {full!r}"
    stopped = chat_sync(chat, [ask("Why is seven prime?", temperature=0.0, max_tokens=24, stop=[stop])])[0]
    assert stopped.text == full[:cut]
    assert stopped.completions[0].finish_reason == "stop"
    assert stopped.completion_tokens < 24  # generation stopped early, not just trimmed


def test_json_schema_is_refused_by_name(chat):
    with pytest.raises(ValueError, match="transformers.*json_schema"):
        chat_sync(chat, [ask("Give me JSON", json_schema={"type": "object"})])


def test_an_impossible_request_is_an_error_not_a_lost_batch(chat):
    too_long, fine = chat_sync(chat, [ask("hi", max_tokens=100_000), ask("hi", temperature=0.0, max_tokens=3)])
    assert not too_long.ok and "max_tokens" in too_long.error and too_long.completions == []
    assert fine.ok and len(fine.completions) == 1


def test_reward_gives_five_attributes_and_their_weighted_sum(tiny):
    weights = {"helpfulness": 1.0, "correctness": 2.0, "coherence": -1.0, "complexity": 0.5, "verbosity": -3.0}
    spec = ModelSpec(kind="reward", model=str(tiny["reward"]), reward_weights=weights, batch_size=2)
    engine = TransformersRewardEngine("tiny-rm", spec)
    conversations = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
        [{"role": "user", "content": "Why is seven prime?"}, {"role": "assistant", "content": "It has no divisors."}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
         {"role": "assistant", "content": "a longer last turn about rivers"}],
    ]
    results = score_sync(engine, conversations)
    assert len(results) == 3
    for result in results:
        assert result.ok
        assert list(result.attributes) == list(HELPSTEER2_ATTRIBUTES)
        expected = sum(weights[name] * value for name, value in result.attributes.items())
        assert result.reward == pytest.approx(expected)
    assert results[0].attributes != results[1].attributes  # the scores depend on the conversation
    alone = score_sync(engine, conversations[2:])[0]  # padding in a batch does not move the score
    assert alone.attributes == pytest.approx(results[2].attributes, abs=1e-5)
    assert engine.usage.requests == 4


def test_one_label_model_gives_a_plain_reward(tiny, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = build_tiny_reward_model(tmp_path / "rm1", num_labels=1)
    engine = TransformersRewardEngine("rm1", ModelSpec(kind="reward", model=str(folder)))
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    result = score_sync(engine, [conversation])[0]
    assert result.attributes == {}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        logit = AutoModelForSequenceClassification.from_pretrained(folder)(**ids).logits[0, 0].item()
    assert result.reward == pytest.approx(logit, abs=1e-5)


def test_attribute_order_matches_names_else_position():
    shuffled = ["verbosity", "helpfulness", "correctness", "coherence", "complexity"]
    assert attribute_order(dict(enumerate(shuffled)), 5) == shuffled
    assert attribute_order({i: f"LABEL_{i}" for i in range(5)}, 5) == list(HELPSTEER2_ATTRIBUTES)
    assert attribute_order({0: "score"}, 1) is None
    with pytest.raises(ValueError, match="5 labels"):
        attribute_order({0: "a", 1: "b", 2: "c"}, 3)


@pytest.fixture(scope="module")
def embedded():
    return TransformersChatEngine("default", ModelSpec(batch_size=4))


@pytest.mark.slow
def test_embedded_model_answers_and_stops_on_its_own(embedded):
    result = chat_sync(embedded, [ask("What is the capital of France? Answer in one short sentence.", temperature=0.0, max_tokens=40)])[0]
    assert result.ok, result.error
    assert "Paris" in result.text
    assert result.completions[0].finish_reason == "stop"  # it ended with <|im_end|>, not the budget
    assert 0 < result.completion_tokens < 40
    assert embedded.model_name.startswith("SmolLM2")


@pytest.mark.slow
def test_embedded_model_samples_reproduce_by_seed(embedded):
    request = ask("Name a color.", n=2, temperature=1.0, seed=11, max_tokens=6)
    first, other_seed = chat_sync(embedded, [request, ask("Name a color.", n=2, temperature=1.0, seed=12, max_tokens=6)])
    again = chat_sync(embedded, [request])[0]
    assert len(first.completions) == 2
    assert texts(first) == texts(again)
    assert texts(first) != texts(other_seed)
    for completion in first.completions:
        assert completion.finish_reason in ("stop", "length")
    assert first.completion_tokens <= 12


def test_all_torch_work_runs_on_the_one_torch_thread(tiny, monkeypatch):
    """Loads, generate and scoring share one thread: one libgomp team (engines/torch_thread.py)."""
    import asyncio
    import threading

    from engines import torch_thread

    seen: list[str] = []
    for cls, method in ((TransformersChatEngine, "_load"), (TransformersChatEngine, "_generate_all"),
                        (TransformersRewardEngine, "_load"), (TransformersRewardEngine, "_score_all")):
        original = getattr(cls, method)

        def spy(self, *args, _original=original):
            seen.append(threading.current_thread().name)
            return _original(self, *args)

        monkeypatch.setattr(cls, method, spy)
    chat_engine = TransformersChatEngine("fresh", ModelSpec(model=str(tiny["chat"])))
    reward_engine = TransformersRewardEngine("fresh", ModelSpec(kind="reward", model=str(tiny["reward"])))
    chat_engine.load()  # from this (main) thread: still loads on the torch thread
    assert chat_sync(chat_engine, [ask("hi", max_tokens=4)])[0].ok
    assert score_sync(reward_engine, [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]])[0].ok
    assert len(seen) >= 4 and all(name.startswith(f"{torch_thread.THREAD_NAME}[default]") for name in seen)
    # one thread, whoever calls; a call from the torch thread itself runs inline (no deadlock)
    idents = {torch_thread.run(threading.get_ident), asyncio.run(torch_thread.arun(threading.get_ident)),
              torch_thread.run(lambda: torch_thread.run(threading.get_ident))}
    assert len(idents) == 1 and threading.get_ident() not in idents
    # a model pinned to a GPU of its own gets its own thread; every other device shares the default
    assert {torch_thread.lane_for(d) for d in ("cpu", "auto", "cuda")} == {"default"}
    assert torch_thread.lane_for("cuda:1") == "cuda:1"
    assert torch_thread.run(threading.get_ident, lane="cuda:1") not in idents
