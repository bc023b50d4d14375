"""Which judges may decide tonight: a model judge first ranks the calibration set.

Ground truth and the verifier are code over checkable answers: trusted by construction. A reward
model or an LLM judge decides pairs only when its accuracy on the calibration pairs (RewardBench's
rule: chosen strictly above rejected) reaches `calibration.min_accuracy`, or when the config names
it in `calibration.trust_anyway`. Accuracies are kept in the catalog per model spec and pairs file,
so a night does not re-measure a model it measured before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.config import ModelSpec
from engines.types import ChatEngine, RewardEngine
from tasks.preferences.config import PreferencesStage

CODE_JUDGES = ("ground_truth", "verifier")


@dataclass(frozen=True)
class Trust:
    judge: str
    trusted: bool
    reason: str
    accuracy: float | None = None
    per_subset: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spec_fingerprint(name: str, spec: ModelSpec) -> str:
    blob = json.dumps([name, spec.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def calibration_file(stage: PreferencesStage) -> Path:
    from tasks.calibration.evaluate import shipped_pairs_path

    return Path(stage.calibration.file) if stage.calibration.file else shipped_pairs_path()


async def measure(catalog: Any, judge: str, model: str, spec: ModelSpec, engine: ChatEngine | RewardEngine,
                  path: Path, seed: int) -> dict:
    """The judge's calibration report (pairs, accuracy, per_subset), from the catalog when measured before."""
    from tasks.calibration.evaluate import evaluate_llm_judge, evaluate_reward, load_pairs

    model_fp, pairs_fp = spec_fingerprint(model, spec), hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    found = catalog.find_calibration(model, model_fp, pairs_fp)
    if found is not None:
        return found
    pairs = load_pairs(path)
    if judge == "llm_judge":
        report = (await evaluate_llm_judge(engine, pairs, model, seed=seed)).to_dict()
    else:
        report = (await evaluate_reward(engine, pairs, model)).to_dict()
    catalog.record_calibration(model, model_fp, pairs_fp, report)
    return report


async def judge_trust(catalog: Any, stage: PreferencesStage, models: dict[str, ModelSpec],
                      reward_engine: RewardEngine, llm_engine: ChatEngine | None, seed: int) -> dict[str, Trust]:
    out = {j: Trust(j, True, "checked by code, not by a model") for j in CODE_JUDGES}
    settings = stage.calibration
    model_judges = [("reward_model", stage.reward, reward_engine)]
    if "llm_judge" in stage.judges and llm_engine is not None:
        model_judges.append(("llm_judge", stage.llm_judge_model(), llm_engine))
    for judge, model, engine in model_judges:
        if not settings.enabled:
            out[judge] = Trust(judge, True, "calibration.enabled is false: trusted unmeasured")
            continue
        path = calibration_file(stage)
        report = await measure(catalog, judge, model, models[model], engine, path, seed)
        accuracy = float(report["accuracy"])
        measured = f"{model} ranks {accuracy:.1%} of {report['pairs']} calibration pairs ({path.name}) right"
        if accuracy >= settings.min_accuracy:
            out[judge] = Trust(judge, True, f"{measured}, at least {settings.min_accuracy:.0%}", accuracy,
                               report["per_subset"])
        elif judge in settings.trust_anyway:
            out[judge] = Trust(judge, True, f"{measured}, below {settings.min_accuracy:.0%}, but listed in "
                               "calibration.trust_anyway", accuracy, report["per_subset"])
        else:
            out[judge] = Trust(judge, False, f"{measured}, below {settings.min_accuracy:.0%}: it decides no pairs",
                               accuracy, report["per_subset"])
    return out
