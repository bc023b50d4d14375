"""The ground-truth judge: prompts with a reference answer (math) are judged by the final answer.

Rules:
- no reference answer on the prompt -> Pass "no_reference"; a reference that does not parse ->
  Pass "reference_unparseable";
- every response right -> Pass "all_correct"; every one wrong -> Pass "all_wrong";
- chosen: the correct response with the highest reward among those that can be chosen (ties in id
  order); only truncated ones correct -> Pass "correct_truncated";
- rejected: the wrong response with the highest reward (the hard negative: wrong but convincing to
  the reward model); rows without a reward rank lowest.
A response with no final answer at all is wrong.
"""

from __future__ import annotations

from tasks.llm_step import Row
from tasks.preferences.judges.answers import answers_match, extract_final_answer
from tasks.preferences.judges.base import Decision, Pair, Pass, by_reward, can_be_chosen, response_text

JUDGE = "ground_truth"


def _reference(group: list[Row]) -> str | None:
    # Every row of a group answers the same prompt, so they share its reference.
    return next((row["reference_answer"] for row in group if (row.get("reference_answer") or "").strip()), None)


def grade(group: list[Row]) -> dict[str, tuple[str | None, bool | None]]:
    """Response id -> (its extracted final answer, is it correct?); correct is None without a usable reference."""
    reference = _reference(group)
    graded: dict[str, tuple[str | None, bool | None]] = {}
    for row in group:
        answer = extract_final_answer(response_text(row))
        graded[row["id"]] = (answer, answers_match(answer, reference) if reference is not None else None)
    return graded


def judge_ground_truth(group: list[Row]) -> Decision:
    reference = _reference(group)
    if reference is None:
        return Pass(JUDGE, "no_reference")
    graded = grade(group)
    if any(correct is None for _, correct in graded.values()):
        return Pass(JUDGE, "reference_unparseable")
    right = [row for row in group if graded[row["id"]][1]]
    wrong = [row for row in group if not graded[row["id"]][1]]
    if not wrong:
        return Pass(JUDGE, "all_correct")
    if not right:
        return Pass(JUDGE, "all_wrong")
    choosable = [row for row in right if can_be_chosen(row)]
    if not choosable:
        return Pass(JUDGE, "correct_truncated")
    chosen, rejected = by_reward(choosable)[0], by_reward(wrong)[0]
    evidence = {
        "reference_answer": reference,
        "chosen_answer": graded[chosen["id"]][0],
        "rejected_answer": graded[rejected["id"]][0],
    }
    return Pair(JUDGE, chosen, rejected, evidence)
