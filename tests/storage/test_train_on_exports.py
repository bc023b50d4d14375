"""The `trl-dpo` and `trl-sft` exports train with TRL's real DPOTrainer and SFTTrainer.

Loading a file with `datasets` proves little; a few optimizer steps on the tiny chat model prove the
rows tokenize through the chat template, batch, and give a finite loss that moves the weights.
"""

import json
import math

import pytest

from storage.catalog import Catalog
from storage.config import LakeConfig
from storage.exports import export
from storage.lake import Lake
from tests.storage.conftest import dialogue_rows, preference_rows
from tests.trainers import run_dpo_steps, run_sft_steps

pytestmark = pytest.mark.slow

STEPS = 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One lake, its two exports and one tiny model, shared: building them is the slow part."""
    from engines.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("train")
    config = LakeConfig(root=str(root / "lake"))
    lake = Lake(config)
    lake.publish(lake.stage_batch("preferences", "2025-01-02", "p-1", preference_rows("p-1", 8)))
    lake.publish(lake.stage_batch("dialogues", "2025-01-02", "d-1", dialogue_rows("d-1", 8)))
    catalog = Catalog(config, lake)
    assert export(catalog, "preferences", "trl-dpo", root / "dpo.jsonl") == 8
    assert export(catalog, "dialogues", "trl-sft", root / "sft.jsonl") == 8
    build_tiny_models(root / "models")
    return root


def weights(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def check_trained(losses, model_dir, out_dir):
    """Steps ran, each logged a finite loss, and the saved weights differ from the starting ones."""
    assert len(losses) == STEPS, losses
    assert all(math.isfinite(loss) for loss in losses), losses
    state = json.loads((out_dir / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    before, after = weights(model_dir), weights(out_dir)
    assert before.keys() == after.keys()
    changed = [name for name in before if not before[name].equal(after[name])]
    assert "lm_head.weight" in changed and len(changed) > len(before) // 2, changed


def test_dpo_trainer_trains_on_trl_dpo_export(workdir):
    out = workdir / "dpo-out"
    losses = run_dpo_steps(workdir / "dpo.jsonl", workdir / "models" / "chat", out, steps=STEPS)
    # Policy equals the reference at step 1, so the sigmoid DPO loss starts at exactly log 2.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
    check_trained(losses, workdir / "models" / "chat", out)


def test_sft_trainer_trains_on_trl_sft_export(workdir):
    out = workdir / "sft-out"
    losses = run_sft_steps(workdir / "sft.jsonl", workdir / "models" / "chat", out, steps=STEPS)
    # A random model over a vocabulary of a few hundred tokens: cross-entropy near ln(vocab), far above 1.
    assert losses[0] > 1.0
    check_trained(losses, workdir / "models" / "chat", out)
