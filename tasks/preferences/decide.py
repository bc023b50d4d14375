"""Every configured judge over each prompt's scored responses; the first that decides makes the pair.

All trusted judges are asked about every prompt (the deterministic ones cost nothing, the LLM
judge's requests go out for the whole batch at once), so the run report can say how often the
judges agree. The pair of a prompt comes from the first judge, in the configured order, that does
not pass: a `Pair` keeps it, a `Drop` (the LLM judge disagreeing with itself) keeps none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from engines.types import ChatEngine
from tasks.llm_step import Drop, Row
from tasks.preferences.config import PreferencesStage
from tasks.preferences.judges.base import Decision, Pair, Pass, can_be_chosen, response_text
from tasks.preferences.judges.ground_truth import grade, judge_ground_truth
from tasks.preferences.judges.llm_judge import judge_llm
from tasks.preferences.judges.reward_model import judge_reward_model
from tasks.preferences.judges.verifier import checks, judge_verifier
from tasks.prompts.common import row_id


@dataclass
class Judged:
    """One batch's verdicts: the pairs kept, every judge's decision per prompt, the prompts without a pair."""

    pairs: list[Pair] = field(default_factory=list)
    decisions: dict[str, dict[str, Decision]] = field(default_factory=dict)  # prompt id -> judge -> decision
    drops: list[Drop] = field(default_factory=list)


def group_by_prompt(responses: Sequence[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in responses:
        groups[row["prompt_id"]].append(row)
    return {pid: sorted(rows, key=lambda r: r["response_index"]) for pid, rows in groups.items()}


async def judge_groups(groups: dict[str, list[Row]], stage: PreferencesStage, trusted: Sequence[str],
                       llm_engine: ChatEngine | None, reward_model: str | None, seed: int) -> Judged:
    asked = [j for j in stage.judges if j in trusted]
    ids = list(groups)
    verdicts: dict[str, list[Decision]] = {}
    if "ground_truth" in asked:
        verdicts["ground_truth"] = [judge_ground_truth(groups[i]) for i in ids]
    if "verifier" in asked:
        verdicts["verifier"] = [judge_verifier(groups[i]) for i in ids]
    if "reward_model" in asked:
        verdicts["reward_model"] = [judge_reward_model(groups[i], stage.min_margin, reward_model) for i in ids]
    if "llm_judge" in asked and llm_engine is not None:
        verdicts["llm_judge"] = await judge_llm(llm_engine, [groups[i] for i in ids],
                                                max_tokens=stage.llm_judge.max_tokens, seed=seed)
    out = Judged()
    for position, prompt_id in enumerate(ids):
        decisions = {judge: verdicts[judge][position] for judge in asked if judge in verdicts}
        out.decisions[prompt_id] = decisions
        final = next((d for d in decisions.values() if not isinstance(d, Pass)), None)
        if isinstance(final, Pair):
            out.pairs.append(final)
        elif isinstance(final, Drop):
            final.source = final.source or {"prompt_id": prompt_id}
            out.drops.append(final)
        else:
            reasons = ", ".join(f"{d.judge}: {d.reason}" for d in decisions.values()) or "no trusted judge"
            out.drops.append(Drop("no_judge_decided", reasons, {"prompt_id": prompt_id}))
    return out


def preference_row(pair: Pair) -> Row:
    chosen, rejected = pair.chosen, pair.rejected
    margin = pair.evidence.get("margin")
    if margin is None and chosen.get("reward") is not None and rejected.get("reward") is not None:
        margin = chosen["reward"] - rejected["reward"]
    return {
        "id": row_id("preference", chosen["prompt_id"], chosen["id"], rejected["id"]),
        "prompt_id": chosen["prompt_id"], "prompt": chosen["prompt"],
        "chosen": chosen["response"], "rejected": rejected["response"], "judge": pair.judge,
        "chosen_reward": chosen.get("reward"), "rejected_reward": rejected.get("reward"),
        "chosen_attributes": chosen.get("attributes"), "rejected_attributes": rejected.get("attributes"),
        "chosen_model": chosen.get("model"), "rejected_model": rejected.get("model"),
        "chosen_id": chosen["id"], "rejected_id": rejected["id"],
        **{k: v for k, v in pair.evidence.items() if k != "margin"}, "margin": margin,
        "model": pair.evidence.get("judge_model"),
    }


def best_of_n(group: Sequence[Row], min_reward: float | None) -> Row | None:
    """The highest-reward response of a prompt that may be an SFT target, as a one-turn `dialogues` row.

    It must not be truncated, must reach `min_reward`, and, where the prompt can be checked, be
    right: the correct answer where there is a reference, one that follows every instruction where
    there are instructions. Rejection sampling from the scores already stored: no generation.
    """
    graded = grade(list(group)) if group and group[0].get("reference_answer") else None
    candidates = []
    for row in group:
        if not can_be_chosen(row) or row.get("reward") is None:
            continue
        if min_reward is not None and row["reward"] < min_reward:
            continue
        if graded is not None and graded.get(row["id"], (None, None))[1] is not True:
            continue
        verdicts = checks(row)
        if verdicts is not None and not all(v["followed"] for v in verdicts):
            continue
        candidates.append(row)
    if not candidates:
        return None
    best = max(candidates, key=lambda r: (r["reward"], -r["response_index"]))
    return {
        "id": row_id("best_of_n", best["id"]), "prompt_id": best["prompt_id"], "persona": None,
        "messages": [*best["prompt"], {"role": "assistant", "content": response_text(best)}],
        "turn_attributes": [best["attributes"]], "turn_rewards": [best["reward"]], "reward": best["reward"],
        "source": "best_of_n",
        **{k: best.get(k) for k in ("task_type", "instruction_ids", "instruction_kwargs", "reward_model", "model",
                                    "backend", "sampling", "seed")},
    }
