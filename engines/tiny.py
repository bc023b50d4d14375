"""Tiny random models for fast tests: a chat LM and a 5-label reward model, built in seconds.

They load through the same code paths as real models (AutoTokenizer / AutoModel, `transformers
serve`, vLLM), so pipelines, storage and gates get exercised for real. Their text is noise.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from engines.types import HELPSTEER2_ATTRIBUTES

SEED = 1234
PAD, BOS, EOS = "<|pad|>", "<|begin|>", "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

# Our own layout: <|begin|><|role|>text<|end|> per turn, then <|assistant|> to prompt a reply.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for turn in messages %}<|{{ turn['role'] }}|>{{ turn['content'] }}<|end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Small but shaped like a Llama: head_dim 32 because vLLM's CPU attention kernels need >= 32.
ARCHITECTURE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)


def _train_tokenizer():
    """Byte-level BPE on the bundled paragraph: every string encodes, a few hundred merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = files("engines").joinpath("tiny_corpus.txt").read_text(encoding="utf-8")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
        padding_side="left",
        model_max_length=ARCHITECTURE["max_position_embeddings"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _llama_config(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **ARCHITECTURE,
        **extra,
    )


def build_tiny_chat_model(out_dir: Path, tokenizer=None) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    tokenizer = tokenizer or _train_tokenizer()
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(_llama_config(tokenizer)).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_reward_model(out_dir: Path, tokenizer=None, num_labels: int = 5) -> Path:
    """A sequence-classification head read at the last token; 5 labels name the HelpSteer2 attributes."""
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = tokenizer or _train_tokenizer()
    if num_labels == len(HELPSTEER2_ATTRIBUTES):
        id2label = dict(enumerate(HELPSTEER2_ATTRIBUTES))
    else:
        id2label = {i: f"reward_{i}" if num_labels > 1 else "reward" for i in range(num_labels)}
    config = _llama_config(
        tokenizer,
        num_labels=num_labels,
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        problem_type="regression",
    )
    torch.manual_seed(SEED + num_labels)
    model = LlamaForSequenceClassification(config).eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_models(out_dir: Path) -> dict[str, Path]:
    """Write `chat/` and `reward/` under out_dir; the same folder twice gives the same weights."""
    out_dir = Path(out_dir)
    tokenizer = _train_tokenizer()
    return {
        "chat": build_tiny_chat_model(out_dir / "chat", tokenizer),
        "reward": build_tiny_reward_model(out_dir / "reward", tokenizer),
    }
