"""Role play over scripted engines: role order and rounds, personas, user-turn retries, every kind of drop,
instruction-following turns, and the settings that fail before any model is called."""

import asyncio
import json
import math

import pytest

from engines.types import ChatResult, Completion, RewardResult, Usage
from flows.config import ConfigError, parse_config
from tasks.dialogues.config import DialoguesStage
from tasks.dialogues.personas import PersonaError, load_personas, read_personas, SHIPPED
from tasks.dialogues.roleplay import role_play

ATTRS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
DOCUMENT = "The Harbour Library opens at nine and closes at six; on Sundays it is closed."
PROMPTS = [
    {"id": "p-single", "task_type": "open_qa", "messages": [{"role": "user", "content": "Why do tides happen?"}]},
    {"id": "p-two", "task_type": "two_turn", "messages": [
        {"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven is prime."},
        {"role": "user", "content": "And an even one?"}]},
    {"id": "p-doc", "task_type": "closed_qa", "messages": [
        {"role": "user", "content": f"{DOCUMENT}\n\nWhen does the library open?"}]},
]
USER_ASK = "Write the next message this person sends"


def is_user_request(request):
    return USER_ASK in request.messages[-1]["content"]


class Engine:
    """Scripted answers with a finish reason: script(request) -> text | (text, finish) | Exception."""

    backend = "scripted"

    def __init__(self, script, model_name="scripted"):
        self.script, self.model_name, self.usage, self.requests = script, model_name, Usage(), []

    async def chat(self, requests):
        out = []
        for request in requests:
            self.requests.append(request)
            answer = self.script(request)
            if isinstance(answer, Exception):
                out.append(ChatResult(error=str(answer)))
                continue
            text, finish = answer if isinstance(answer, tuple) else (answer, "stop")
            out.append(ChatResult([Completion(text, finish)], completion_tokens=len(text.split())))
        return out

    async def aclose(self):
        return None


class Reward:
    """Grades each conversation's last turn by a function of its text (default: 3 for everything)."""

    model_name, backend = "rm", "test"

    def __init__(self, grade=lambda text: 3.0):
        self.grade, self.usage, self.seen = grade, Usage(), []

    async def score(self, conversations):
        self.seen += conversations
        out = []
        for conversation in conversations:
            value = self.grade(conversation[-1]["content"])
            if isinstance(value, Exception):
                out.append(RewardResult(error=str(value)))
            else:
                out.append(RewardResult(attributes={a: value for a in ATTRS}, reward=value))
        return out


def default_script(request):
    if is_user_request(request):
        return f"Could you say more about point {len(request.messages[-1]['content']) % 7}?"
    return f"An answer to: {request.messages[-1]['content'][-40:]}"


def play(prompts=PROMPTS, assistant_script=default_script, user_script=None, reward=None, **settings):
    stage = DialoguesStage(enabled=True, **settings)
    a = Engine(assistant_script, "assistant-model")
    u = Engine(user_script or default_script, "user-model")
    engines = {"default": a, "user": u}
    stage.user.model = "user"
    reward = reward or Reward()
    out, retried = asyncio.run(role_play(engines.__getitem__, reward, prompts, load_personas(stage.personas), stage, 3))
    return out, retried, a, u, reward


def test_every_dialogue_alternates_roles_for_its_rounds_and_carries_its_persona():
    out, _, assistant, user, reward = play(user_script=default_script, rounds=3)
    assert not out.drops
    personas = {p.id: p for p in read_personas(SHIPPED)}
    for row in out.rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * 3
        assert row["source"] == "role_play" and row["persona"] in personas
        assert json.loads(row["persona_profile"])["who"] == personas[row["persona"]].who
        assert len(row["turn_attributes"]) == len(row["turn_rewards"]) == 3  # every assistant turn, the prompt's too
        assert row["reward"] == min(row["turn_rewards"])
        assert (row["model"], row["user_model"], row["reward_model"]) == ("assistant-model", "user-model", "rm")
        assert row["sampling"]["temperature"] == 0.0 and row["user_sampling"]["temperature"] == 0.8
        assert row["template_id"] == "dialogues.user_turn"
    two = next(r for r in out.rows if r["prompt_id"] == "p-two")
    assert two["messages"][:3] == PROMPTS[1]["messages"]  # continued from the turns it had
    # the persona is in every user-side request; the assistant sees the whole history
    for request in user.requests:
        prompt = request.messages[-1]["content"]
        assert any(p.who in prompt and p.style in prompt for p in personas.values())
    assert all(r.temperature == 0.0 for r in assistant.requests)


def test_the_document_of_a_closed_qa_prompt_stays_in_context_for_every_turn():
    out, _, assistant, user, _ = play(prompts=[PROMPTS[2]], user_script=default_script, rounds=3)
    assert len(out.rows) == 1
    assert len(assistant.requests) == 3 and all(DOCUMENT in r.messages[0]["content"] for r in assistant.requests)
    assert len(user.requests) == 2 and all(DOCUMENT in r.messages[-1]["content"] for r in user.requests)


def test_a_user_turn_that_answers_is_asked_again_with_a_new_seed_then_the_dialogue_is_dropped():
    tries = {}

    def user(request):
        key = request.messages[-1]["content"][:0] + str(len(request.messages[-1]["content"]))
        tries[key] = tries.get(key, 0) + 1
        return "Here are three tips: water, light, soil." if tries[key] == 1 else "Thanks! Why does light matter?"

    out, retried, _, u, _ = play(prompts=[PROMPTS[0]], user_script=user, rounds=2)
    assert len(out.rows) == 1 and out.rows[0]["messages"][2]["content"] == "Why does light matter?"
    assert retried["user_turn"] == 1 and len({r.seed for r in u.requests}) == 2

    out, retried, _, u, _ = play(prompts=[PROMPTS[0]], user_script=lambda r: "As an AI, I can help.", rounds=2,
                                 user={"tries": 3})
    assert [d.reason for d in out.drops] == ["user_turn_speaks_as_assistant"]
    assert out.drops[0].raw == "As an AI, I can help." and out.drops[0].source["prompt_id"] == "p-single"
    assert len(u.requests) == 3 and len({r.seed for r in u.requests}) == 3


@pytest.mark.parametrize("answer, reason", [
    ("", "empty_assistant_turn"),
    (("A long answer that was cut", "length"), "truncated_assistant_turn"),
    (RuntimeError("server down"), "assistant_engine_error"),
])
def test_a_bad_assistant_turn_drops_the_dialogue_and_the_batch_goes_on(answer, reason):
    def assistant(request):
        if "tides" in request.messages[0]["content"]:
            return answer
        return default_script(request)

    out, *_ = play(assistant_script=assistant, rounds=2)
    assert [d.reason.split(":")[0] for d in out.drops] == [reason]
    assert sorted(r["prompt_id"] for r in out.rows) == ["p-doc", "p-two"]


@pytest.mark.parametrize("grade, reason", [
    (lambda text: math.nan, "reward_not_finite"),
    (lambda text: RuntimeError("reward server down"), "reward_error"),
    (lambda text: 0.5 if "Could you" in text or "point" in text else 3.0, "low_turn_reward"),
])
def test_a_turn_that_cannot_be_scored_or_scores_low_drops_the_dialogue(grade, reason):
    out, *_ = play(prompts=[PROMPTS[0]], reward=Reward(grade), rounds=2, min_turn_reward=1.0)
    assert [d.reason.split(":")[0] for d in out.drops] == [reason] and not out.rows


def test_a_low_turn_stops_the_dialogue_before_another_round_is_spent():
    reward = Reward(lambda text: 0.0)
    out, _, assistant, _, _ = play(prompts=[PROMPTS[0]], reward=reward, rounds=3, min_turn_reward=1.0)
    assert [d.reason for d in out.drops] == ["low_turn_reward"]
    assert len(assistant.requests) == 1  # one assistant turn, no user turn after it


MULTI = {"id": "p-if", "task_type": "instruction_following", "turn_form": "multi",
         "instruction_ids": ["punctuation:no_comma"], "instruction_kwargs": json.dumps([{}]),
         "messages": [{"role": "user", "content": "Describe a lighthouse.\n\nFollow these rules in this reply "
                                                 "and in every later reply of our conversation:\nDo not use commas."}]}


def test_every_assistant_turn_of_a_multi_turn_instruction_prompt_is_checked():
    def assistant(request):  # obeys in the first answer, breaks the rule in the second
        return "A tall white tower" if len(request.messages) == 1 else "Tall, white, and bright"

    out, *_ = play(prompts=[MULTI], assistant_script=assistant, rounds=2)
    assert [d.reason for d in out.drops] == ["instruction_broken"] and out.drops[0].raw == "Tall, white, and bright"

    single = {**MULTI, "turn_form": "single"}  # only the first answer is bound
    out, *_ = play(prompts=[single], assistant_script=assistant, rounds=2)
    assert len(out.rows) == 1 and out.rows[0]["instruction_ids"] == ["punctuation:no_comma"]


def test_a_broken_rule_is_sampled_again_where_the_config_says_so():
    def assistant(request):
        if len(request.messages) == 1:
            return "A tall white tower"
        return "Tall and bright and white" if request.temperature > 0 else "Tall, white, and bright"

    out, retried, a, _, _ = play(prompts=[MULTI], assistant_script=assistant, rounds=2, instruction_retries=2,
                                 retry_temperature=0.9)
    assert len(out.rows) == 1 and out.rows[0]["messages"][-1]["content"] == "Tall and bright and white"
    assert retried["instruction"] == 1 and [r.temperature for r in a.requests if len(r.messages) > 1] == [0.0, 0.9]


def test_a_persona_file_with_a_missing_field_names_the_file_line_and_field(tmp_path):
    bad = tmp_path / "personas.jsonl"
    bad.write_text('{"id": "a", "who": "x", "wants": "y", "style": "z"}\n{"id": "b", "who": "x", "wants": "y"}\n')
    with pytest.raises(ConfigError, match=r"personas.jsonl:2: persona field 'style' is missing"):
        parse_config({"dialogues": {"enabled": True, "personas": {"file": str(bad)}}})


def test_user_personas_extend_ours_or_replace_them(tmp_path):
    own = tmp_path / "own.jsonl"
    own.write_text('{"id": "pilot", "who": "an airline pilot", "wants": "checklists", "style": "clipped"}\n')
    shipped = read_personas(SHIPPED)
    assert len(shipped) >= 30 and len({p.style for p in shipped}) == len(shipped)
    stage = DialoguesStage(personas={"file": str(own)})
    assert len(load_personas(stage.personas)) == len(shipped) + 1
    stage = DialoguesStage(personas={"file": str(own), "replace": True})
    assert [p.id for p in load_personas(stage.personas)] == ["pilot"]
    with pytest.raises(PersonaError, match="no such persona file"):
        read_personas(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("dialogues, message", [
    ({"rounds": 9}, r"dialogues.rounds: Input should be less than or equal to 8"),
    ({"rounds": 0}, r"dialogues.rounds: Input should be greater than or equal to 1"),
    ({"reward": "nope"}, r"dialogues.reward names model 'nope', which is not in models"),
    ({"user": {"model": "rm"}}, r"dialogues.user.model needs a chat model, but 'rm' is a reward model"),
])
def test_bad_settings_name_the_field_and_what_is_allowed(dialogues, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"models": {"rm": {"kind": "reward", "backend": "logprob"}},
                      "dialogues": {"enabled": True, **dialogues}})


def test_an_assistant_that_repeats_itself_is_dropped():
    out, *_ = play(prompts=[PROMPTS[0]], assistant_script=lambda r: "Because of the Moon.", rounds=2)
    assert [d.reason for d in out.drops] == ["repeated_assistant_turn"]


def test_a_system_prompt_is_seen_first_and_kept_on_the_row():
    out, _, assistant, user, _ = play(prompts=[PROMPTS[0]], user_script=default_script, rounds=2,
                                      assistant={"system_prompt": "Answer in two sentences."})
    (row,) = out.rows
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert all(r.messages[0] == {"role": "system", "content": "Answer in two sentences."} for r in assistant.requests)
    assert all("Answer in two sentences" not in r.messages[-1]["content"] for r in user.requests)  # the user never sees it
    assert len(row["turn_rewards"]) == 2


def test_a_user_turn_that_repeats_the_conversation_is_asked_again():
    out, *_ = play(prompts=[PROMPTS[0]], user_script=lambda r: "why do tides happen", rounds=2, user={"tries": 2})
    assert [d.reason for d in out.drops] == ["user_turn_repeats_an_earlier_turn"]
