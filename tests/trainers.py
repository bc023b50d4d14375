"""A few real TRL optimizer steps on an export: proof that a trainer reads our files, not a model.

Both helpers load the JSONL with `datasets`, the tiny chat model from `engines.tiny`, and train on CPU in
float32. They save the final weights and `trainer_state.json` into `out_dir`, so a test can check that
the weights moved and how many steps ran; they return the training loss TRL logged at each step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SEED = 1234


def _common_args(out_dir: str | Path, steps: int) -> dict[str, Any]:
    """TrainingArguments shared by DPOConfig and SFTConfig (TRL 1.16 / transformers 5)."""
    return dict(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,  # large enough that one step visibly moves a random tiny model
        logging_steps=1,
        save_strategy="no",  # the helper saves once at the end, into out_dir
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        # TRL's base config defaults bf16 to True (when fp16 is off) and gradient checkpointing to True:
        # we want plain float32 on CPU, and checkpointing only slows a 2-layer model down. transformers 5
        # renamed it activation_checkpointing; the new name avoids its deprecation warning.
        bf16=False,
        activation_checkpointing=False,
        seed=SEED,
        data_seed=SEED,
        dataloader_num_workers=0,
        dataset_num_proc=None,
        max_length=128,  # 1.16 has no max_prompt_length; max_length bounds prompt + completion
        disable_tqdm=True,
    )


def _load(dataset_path: str | Path, model_dir: str | Path):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dataset = load_dataset("json", data_files=str(dataset_path), split="train")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # The tiny tokenizer already has pad/eos/chat template; fail loudly here rather than let TRL guess.
    assert tokenizer.pad_token and tokenizer.eos_token and tokenizer.chat_template, "tiny tokenizer is incomplete"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return dataset, model, tokenizer


def _finish(trainer, out_dir: str | Path) -> list[float]:
    trainer.train()
    trainer.save_model(str(out_dir))
    trainer.save_state()  # trainer_state.json: global_step and log_history
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def run_dpo_steps(dataset_path: str | Path, model_dir: str | Path, out_dir: str | Path, steps: int = 2) -> list[float]:
    """Train `steps` DPO steps on a `trl-dpo` export; the reference model is TRL's own frozen copy."""
    from trl import DPOConfig, DPOTrainer

    dataset, model, tokenizer = _load(dataset_path, model_dir)
    # precompute_ref_log_probs stays False (the default): the reference forward runs per batch, on CPU.
    args = DPOConfig(**_common_args(out_dir, steps), beta=0.1, precompute_ref_log_probs=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _finish(trainer, out_dir)


def run_sft_steps(dataset_path: str | Path, model_dir: str | Path, out_dir: str | Path, steps: int = 2) -> list[float]:
    """Train `steps` SFT steps on a `trl-sft` export (conversational `messages` rows)."""
    from trl import SFTConfig, SFTTrainer

    dataset, model, tokenizer = _load(dataset_path, model_dir)
    args = SFTConfig(**_common_args(out_dir, steps), packing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _finish(trainer, out_dir)
