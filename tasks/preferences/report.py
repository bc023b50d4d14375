"""The judge report of a run: what each judge decided, how often judges agree, the LLM judge's bias.

Agreement is measured against the reward model wherever another judge decided a pair and both of
its responses carry a reward: the share of that judge's pairs whose chosen response the reward
model also scores higher. The position-bias rate is the share of prompts the LLM judge read whose
two verdicts contradicted each other once the responses were swapped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from tasks.llm_step import Drop
from tasks.preferences.judges.base import Decision, Pair, Pass
from tasks.preferences.trust import Trust


def judge_report(decisions: Mapping[str, Mapping[str, Decision]], kept: Mapping[str, int],
                 trust: Mapping[str, Trust], judges: list[str]) -> list[dict[str, Any]]:
    """One row per configured judge (the catalog's `judges` table)."""
    rows = []
    for judge in judges:
        seen = [d[judge] for d in decisions.values() if judge in d]
        pairs = [d for d in seen if isinstance(d, Pair)]
        scored = [p for p in pairs if p.chosen.get("reward") is not None and p.rejected.get("reward") is not None]
        agree = sum(p.chosen["reward"] > p.rejected["reward"] for p in scored)
        bias = sum(isinstance(d, Drop) and d.reason == "judge_position_bias" for d in seen)
        verdict = trust.get(judge)
        rows.append({
            "judge": judge, "decided": kept.get(judge, 0), "could_decide": len(pairs),
            "passed": sum(isinstance(d, Pass) for d in seen), "dropped": sum(isinstance(d, Drop) for d in seen),
            "pass_reasons": dict(Counter(d.reason for d in seen if isinstance(d, Pass))),
            "trusted": verdict.trusted if verdict else False,
            "calibration_accuracy": verdict.accuracy if verdict else None,
            "trust_reason": verdict.reason if verdict else "not configured",
            "agreement_with_reward": agree / len(scored) if scored and judge != "reward_model" else None,
            "agreement_pairs": len(scored) if judge != "reward_model" else 0,
            "position_bias_rate": bias / len(seen) if judge == "llm_judge" and seen else None,
        })
    return rows


def report_markdown(run_id: str, rows: list[dict[str, Any]], counts: Mapping[str, int]) -> str:
    lines = [f"# Judges of {run_id}", "", " · ".join(f"{k}: {v}" for k, v in counts.items()), "",
             "| judge | trusted | calibration | decided | could decide | passed | dropped | agrees with reward | position bias |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['judge']} | {'yes' if r['trusted'] else 'no'} | {_pct(r['calibration_accuracy'])} | "
                     f"{r['decided']} | {r['could_decide']} | {r['passed']} | {r['dropped']} | "
                     f"{_pct(r['agreement_with_reward'])} ({r['agreement_pairs']} pairs) | {_pct(r['position_bias_rate'])} |")
    lines += ["", "Why each judge was trusted or not:", ""]
    lines += [f"- **{r['judge']}**: {r['trust_reason']}" for r in rows]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
