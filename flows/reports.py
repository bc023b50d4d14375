"""What a person reads in the Prefect UI about a run: artifact keys, the batches table, the night summary.

Artifact keys are stable across nights: `<config name>-<what>` (a deployment runs one config),
so the Artifacts page shows each one's history night after night. A stage's own artifacts sit
on its subflow run; the night's summary and its table of every batch sit on the nightly run.
"""

from __future__ import annotations

from typing import Any

STAGES = ("prompts", "preferences", "dialogues")


def artifact_key(config_name: str, what: str) -> str:
    """Lowercase letters, digits and dashes only (Prefect's rule for keys)."""
    text = f"{config_name}-{what}".lower()
    return "".join(c if c.isalnum() else "-" for c in text)[:100].strip("-")


def format_drops(drops: dict[str, int]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in sorted(drops.items(), key=lambda kv: -kv[1])) or "-"


def batches_table(stage: str, outcomes: list[dict]) -> list[dict]:
    """One row per gate batch: its verdict and its drops per reason."""
    return [{"stage": stage, "dataset": o["dataset"], "batch": o["batch_id"], "state": o["state"],
             "rows_in": o["rows_in"], "rows_out": o["rows_out"], "drops": format_drops(o.get("drops") or {}),
             "failed_checks": ", ".join(o.get("failed") or []) or "-"} for o in outcomes]


def night_batches(summary: dict) -> list[dict]:
    return [row for stage in STAGES if stage in summary for row in batches_table(stage, summary[stage]["batches"])]


def _reward_lines(catalog: Any, ids: list[str]) -> list[str]:
    lines = ["| dataset | scored rows | min | mean | max |", "| --- | --- | --- | --- | --- |"]
    for dataset, column in (("responses", "reward"), ("preferences", "chosen_reward"), ("dialogues", "reward")):
        row = catalog.query(f"SELECT count({column}) AS n, min({column}) AS lo, avg({column}) AS mean, "
                            f"max({column}) AS hi FROM {dataset} WHERE list_contains($ids, run_id)",
                            {"ids": ids}).to_pylist()[0]
        if row["n"]:
            lines.append(f"| {dataset} ({column}) | {row['n']} | {row['lo']:.2f} | {row['mean']:.2f} | {row['hi']:.2f} |")
    return lines if len(lines) > 2 else ["no scored rows"]


def night_markdown(config: Any, run_date: str, summary: dict, catalog: Any) -> str:
    """Rows per dataset, acceptance, rewards, judges, models, and the commands to query the night."""
    ids = [summary[s]["run_id"] for s in STAGES if s in summary]
    batches = night_batches(summary)
    lines = [f"# Night {run_date} of `{config.name}`", "", "| dataset | published rows | batches | acceptance |",
             "| --- | --- | --- | --- |"]
    for dataset in sorted({b["dataset"] for b in batches}):
        mine = [b for b in batches if b["dataset"] == dataset]
        rows_in, rows_out = sum(b["rows_in"] for b in mine), sum(b["rows_out"] for b in mine)
        published = sum(b["state"] == "published" for b in mine)
        lines.append(f"| {dataset} | {rows_out} | {published} of {len(mine)} published | "
                     f"{rows_out / rows_in:.0%} |" if rows_in else f"| {dataset} | 0 | {len(mine)} | - |")
    lines += ["", "## Rewards", "", *_reward_lines(catalog, ids)]
    judges = catalog.query("SELECT judge, decided, trusted, agreement_with_reward, position_bias_rate FROM judges "
                           "WHERE list_contains($ids, run_id) ORDER BY judge", {"ids": ids}).to_pylist()
    if judges:
        lines += ["", "## Judges", "", "| judge | pairs decided | trusted | agrees with reward | position bias |",
                  "| --- | --- | --- | --- | --- |"]
        show = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines += [f"| {j['judge']} | {j['decided']} | {j['trusted']} | {show(j['agreement_with_reward'])} | "
                  f"{show(j['position_bias_rate'])} |" for j in judges]
    usage = catalog.query("SELECT model, backend, sum(requests)::BIGINT AS requests, sum(completion_tokens)::BIGINT "
                          "AS tokens, sum(seconds) AS seconds FROM usage WHERE list_contains($ids, run_id) "
                          "GROUP BY ALL ORDER BY ALL", {"ids": ids}).to_pylist()
    if usage:
        lines += ["", "## Models", "", "| model | backend | requests | tokens written | busy s | tokens/s |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {u['model']} | {u['backend']} | {u['requests']} | {u['tokens']} | {u['seconds']:.0f} | "
                  f"{u['tokens'] / u['seconds']:.0f} |" if u["seconds"] else
                  f"| {u['model']} | {u['backend']} | {u['requests']} | {u['tokens']} | - | - |" for u in usage]
    lines += ["", "## Query it", "", "```bash",
              'sdg sql -c CONFIG "SELECT task_type, count(*) FROM prompts GROUP BY ALL"',
              'sdg sql -c CONFIG "SELECT judge, count(*), avg(margin) FROM preferences GROUP BY ALL"',
              'sdg sql -c CONFIG "SELECT source, count(*), avg(reward) FROM dialogues GROUP BY ALL"',
              f'sdg sql -c CONFIG "SELECT reason, sum(count) FROM drops WHERE run_id LIKE \'{config.name}-%-{run_date}\' '
              'GROUP BY ALL ORDER BY 2 DESC"', "```"]
    return "\n".join(lines)
