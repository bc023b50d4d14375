"""The reward-model judge: the aggregate reward decides, when the gap is wide enough to trust.

Rules:
- rows without a reward are ignored; fewer than 2 scored rows -> Pass "unscored";
- chosen: the highest reward among the scored rows that can be chosen (none -> Pass
  "scored_truncated"); rejected: the lowest reward among the other scored rows (ties in id order);
- margin = chosen reward - rejected reward; below `min_margin` -> Pass "margin_below_minimum", and a
  margin of zero or less is never a preference (Pass "tie"), even with min_margin 0;
- the margin is compared with a 1e-9 slack, so a gap that is min_margin up to float rounding counts.
Evidence: margin, judge_model (the `reward_model` given, else the chosen row's own `reward_model`).
"""

from __future__ import annotations

from tasks.llm_step import Row
from tasks.preferences.judges.base import Decision, Pair, Pass, by_reward, can_be_chosen

JUDGE = "reward_model"
_SLACK = 1e-9  # 3.3 - 3.1 is 0.19999999999999973 in floats


def judge_reward_model(group: list[Row], min_margin: float, reward_model: str | None = None) -> Decision:
    scored = [row for row in group if row.get("reward") is not None]
    if len(scored) < 2:
        return Pass(JUDGE, "unscored")
    choosable = [row for row in scored if can_be_chosen(row)]
    if not choosable:
        return Pass(JUDGE, "scored_truncated")
    chosen = by_reward(choosable)[0]
    rejected = min((row for row in scored if row is not chosen), key=lambda row: (row["reward"], str(row["id"])))
    margin = float(chosen["reward"]) - float(rejected["reward"])
    if margin <= _SLACK:
        return Pass(JUDGE, "tie")
    if margin < min_margin - _SLACK:
        return Pass(JUDGE, "margin_below_minimum")
    model = reward_model if reward_model is not None else chosen.get("reward_model")
    return Pair(JUDGE, chosen, rejected, {"margin": margin, "judge_model": model})
