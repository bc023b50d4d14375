"""Role play: one model answers as the assistant, one plays a user with a persona, round after round.

A dialogue starts from a published prompt (its user turns, and any assistant turn it already
has) and has `rounds` user turns, each answered by the assistant. Per round, for every dialogue
of the batch still alive, in one engine call each:

1. the assistant answers the whole history (greedy by default); an empty answer or one cut by
   `max_tokens` drops the dialogue. An instruction-following prompt's rules are checked on the
   turns they bind (every turn for the multi-turn form, the first answer otherwise); a broken
   rule is sampled again `instruction_retries` times, then the dialogue is dropped;
2. the reward engine scores the new assistant turn in its context (the five attributes and the
   aggregate); an error or a NaN drops the dialogue, and so does a turn below `min_turn_reward`:
   no round is spent on a dialogue that cannot be kept;
3. except after the last round, the user model, given the persona and the history, writes the
   next user turn; filler is stripped, and a turn that answers, speaks as the assistant or
   echoes our request is asked for again with a new seed, up to `user.tries` times.

Rounds of one dialogue are sequential; a batch's dialogues go through each round together, so
a batch costs a handful of engine calls per round, not one per dialogue.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.types import HELPSTEER2_ATTRIBUTES, ChatEngine, ChatRequest, RewardEngine
from tasks.dialogues.config import DialoguesStage
from tasks.dialogues.personas import Persona, persona_for
from tasks.llm_step import Drop, Row, StepResult
from tasks.preferences.judges.verifier import InstructionsUnreadable, checks
from tasks.prompts.common import row_id, stable_seed
from tasks.templates import Template, load_template
from tasks.user_turns import clean_user_turn

USER_TEMPLATE = Path(__file__).parent / "templates" / "user_turn.txt"
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass
class Dialogue:
    prompt: Row
    persona: Persona
    messages: list[dict[str, str]]
    generated_from: int  # messages before this index came with the prompt
    turn_attributes: list[dict[str, float | None]] = field(default_factory=list)
    turn_rewards: list[float] = field(default_factory=list)
    drop: Drop | None = None

    @property
    def user_turns(self) -> int:
        return sum(m["role"] == "user" for m in self.messages)

    def fail(self, reason: str, raw: str | None) -> None:
        self.drop = Drop(reason[:200], raw, {"prompt_id": self.prompt["id"], "persona": self.persona.id,
                                            "turns": len(self.messages)})


def user_template() -> Template:
    return load_template(USER_TEMPLATE)


def transcript(messages: Sequence[dict[str, str]]) -> str:
    return "\n\n".join(f"{ROLE_NAMES[m['role']]}: {m['content']}" for m in messages if m["role"] != "system")


def checked_turn(dialogue: Dialogue) -> bool:
    """Whether the assistant turn about to be written is bound by the prompt's instructions:
    every turn for the multi-turn form, only the first answer for the single- and second-turn forms."""
    if not dialogue.prompt.get("instruction_ids"):
        return False
    first_answer = not any(m["role"] == "assistant" for m in dialogue.messages[dialogue.generated_from:])
    return dialogue.prompt.get("turn_form") == "multi" or first_answer


def instruction_verdicts(dialogue: Dialogue, text: str) -> list[dict[str, Any]] | None:
    row = {**dialogue.prompt, "response": [{"role": "assistant", "content": text}]}
    return checks(row)


class RolePlay:
    """The rounds of one batch of dialogues (see the module doc)."""

    def __init__(self, assistant: ChatEngine, user: ChatEngine, reward: RewardEngine, stage: DialoguesStage,
                 seed: int) -> None:
        self.assistant, self.user, self.reward, self.stage, self.seed = assistant, user, reward, stage, seed
        self.template = user_template()
        self.retried: dict[str, int] = {"user_turn": 0, "instruction": 0}  # extra attempts spent

    async def run(self, prompts: Sequence[Row], personas: list[Persona]) -> StepResult:
        dialogues = [self.start(p, persona_for(p["id"], personas, self.seed)) for p in prompts]
        first = True
        while alive := [d for d in dialogues if d.drop is None and d.messages[-1]["role"] == "user"]:
            await self.assistant_turns(alive)
            await self.score_turns([d for d in alive if d.drop is None], first)
            first = False
            await self.user_turns([d for d in alive if d.drop is None and d.user_turns < self.stage.rounds])
        out = StepResult()
        for d in dialogues:
            if d.drop is not None:
                out.drops.append(d.drop)
            else:
                out.rows.append(self.row(d))
        return out

    def start(self, prompt: Row, persona: Persona) -> Dialogue:
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt["messages"]]
        system = self.stage.assistant.system_prompt
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        return Dialogue(prompt, persona, messages, generated_from=len(messages))

    def _assistant_request(self, d: Dialogue, attempt: int) -> ChatRequest:
        side = self.stage.assistant
        temperature = side.temperature if attempt == 0 else self.stage.retry_temperature
        return ChatRequest(messages=list(d.messages), temperature=temperature, top_p=side.top_p,
                           max_tokens=side.max_tokens,
                           seed=stable_seed(self.seed, "assistant", d.prompt["id"], len(d.messages), attempt))

    async def assistant_turns(self, dialogues: list[Dialogue]) -> None:
        pending, attempt = list(dialogues), 0
        while pending:
            results = await self.assistant.chat([self._assistant_request(d, attempt) for d in pending])
            again = []
            for d, result in zip(pending, results, strict=True):
                if not result.ok:
                    d.fail(f"assistant_engine_error: {result.error}", None)
                    continue
                completion = result.completions[0]
                text = completion.text.strip()
                if not text:
                    d.fail("empty_assistant_turn", completion.text)
                elif completion.finish_reason == "length":
                    d.fail("truncated_assistant_turn", completion.text)
                elif any(m["role"] == "assistant" and m["content"] == text for m in d.messages):
                    d.fail("repeated_assistant_turn", text)  # greedy decoding stuck: no new information
                elif checked_turn(d) and (broken := self._broken(d, text)):
                    if attempt < self.stage.instruction_retries:
                        again.append(d)
                    else:
                        d.fail(broken, text)
                else:
                    d.messages.append({"role": "assistant", "content": text})
            self.retried["instruction"] += len(again)
            pending, attempt = again, attempt + 1

    def _broken(self, d: Dialogue, text: str) -> str | None:
        try:
            verdicts = instruction_verdicts(d, text) or []
        except InstructionsUnreadable as exc:
            return f"instructions_unreadable: {exc}"
        return None if all(v["followed"] for v in verdicts) else "instruction_broken"

    async def score_turns(self, dialogues: list[Dialogue], first_round: bool) -> None:
        """Score each new assistant turn in context (on the first round, also the prompt's own)."""
        items: list[tuple[Dialogue, int]] = []  # (dialogue, index of the assistant turn)
        for d in dialogues:
            start = 0 if first_round else len(d.messages) - 1
            items += [(d, i) for i in range(start, len(d.messages)) if d.messages[i]["role"] == "assistant"]
        results = await self.reward.score([d.messages[: i + 1] for d, i in items]) if items else []
        for (d, i), result in zip(items, results, strict=True):
            if d.drop is not None:
                continue
            if not result.ok:
                d.fail(f"reward_error: {result.error}", d.messages[i]["content"])
                continue
            values = [result.reward, *(result.attributes.get(a) for a in HELPSTEER2_ATTRIBUTES)]
            if any(v is None or not math.isfinite(v) for v in values):
                d.fail("reward_not_finite", d.messages[i]["content"])
                continue
            d.turn_attributes.append({a: float(result.attributes[a]) for a in HELPSTEER2_ATTRIBUTES})
            d.turn_rewards.append(float(result.reward))
            floor = self.stage.min_turn_reward
            if floor is not None and result.reward < floor:
                d.fail("low_turn_reward", d.messages[i]["content"])

    def _user_request(self, d: Dialogue, attempt: int) -> ChatRequest:
        side, p = self.stage.user, d.persona
        prompt = self.template.render(who=p.who, wants=p.wants, style=p.style, history=transcript(d.messages))
        return ChatRequest(messages=[{"role": "user", "content": prompt}], temperature=side.temperature,
                           top_p=side.top_p, max_tokens=side.max_tokens,
                           seed=stable_seed(self.seed, "user", d.prompt["id"], len(d.messages), attempt))

    async def user_turns(self, dialogues: list[Dialogue]) -> None:
        pending, last_problem = list(dialogues), {}
        for attempt in range(self.stage.user.tries):
            if not pending:
                return
            if attempt:
                self.retried["user_turn"] += len(pending)
            results = await self.user.chat([self._user_request(d, attempt) for d in pending])
            again = []
            for d, result in zip(pending, results, strict=True):
                if not result.ok:
                    last_problem[id(d)] = (f"engine_error: {result.error}", None)
                    again.append(d)
                    continue
                text = result.completions[0].text
                turn = clean_user_turn(text, self.template.body)
                if not isinstance(turn, Drop) and _said_before(turn, d.messages):
                    turn = Drop("repeats_an_earlier_turn", text)
                if isinstance(turn, Drop):
                    last_problem[id(d)] = (turn.reason, text)
                    again.append(d)
                else:
                    d.messages.append({"role": "user", "content": turn})
            pending = again
        for d in pending:
            reason, raw = last_problem[id(d)]
            d.fail(f"user_turn_{reason}", raw)

    def row(self, d: Dialogue) -> Row:
        prompt, assistant, user = d.prompt, self.stage.assistant, self.stage.user
        return {
            "id": row_id("dialogue", prompt["id"], d.persona.id, self.stage.rounds, self.seed),
            "prompt_id": prompt["id"], "task_type": prompt.get("task_type"),
            "persona": d.persona.id, "persona_profile": d.persona.describe(),
            "messages": d.messages, "turn_attributes": d.turn_attributes, "turn_rewards": d.turn_rewards,
            "reward": min(d.turn_rewards), "source": "role_play",
            "instruction_ids": prompt.get("instruction_ids"), "instruction_kwargs": prompt.get("instruction_kwargs"),
            "model": self.assistant.model_name, "backend": self.assistant.backend,
            # per-turn seeds derive from `seed` (stable_seed): the sides' sampling is stored without one
            "sampling": {"temperature": assistant.temperature, "top_p": assistant.top_p,
                         "max_tokens": assistant.max_tokens, "seed": None},
            "user_model": self.user.model_name, "user_backend": self.user.backend,
            "user_sampling": {"temperature": user.temperature, "top_p": user.top_p, "max_tokens": user.max_tokens,
                              "seed": None},
            "reward_model": self.reward.model_name,
            "template_id": self.template.id, "template_version": self.template.version, "seed": self.seed,
        }


def _said_before(turn: str, messages: list[dict[str, str]]) -> bool:
    squash = lambda t: " ".join(t.lower().split()).strip(" .!?")  # noqa: E731
    return any(squash(m["content"]) == squash(turn) for m in messages)


async def role_play(engine_for: Callable[[str], ChatEngine], reward: RewardEngine, prompts: Sequence[Row],
                    personas: list[Persona], stage: DialoguesStage, seed: int) -> tuple[StepResult, dict[str, int]]:
    """The dialogues grown from `prompts`, the drops, and the extra attempts spent on retries."""
    play = RolePlay(engine_for(stage.assistant.model), engine_for(stage.user.model), reward, stage, seed)
    out = await play.run(prompts, personas)
    return out, play.retried
