"""What the `logprob` judge reads, as token ids: shared by the transformers and vLLM readers.

Per conversation (ending with the assistant reply to grade) three pieces, all on the model's
own chat template:

- `prefix_ids`: the conversation with the reply, the reply's tokens last (`reply_len` of them,
  the end-of-turn marker included: ending where it ends is part of a good reply);
- `uncond_ids`: the same reply after an empty user turn (the reply without its question);
- `suffix_ids[attribute]`: a user turn asking for that attribute as one digit 0..4, then the
  assistant header, so the digit is the next token. The conversation comes first and the
  question last, so a KV cache of `prefix_ids` serves all five questions.

The pieces are tokenized separately and concatenated, so a batched reading and a one-at-a-time
reading see the very same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engines.types import HELPSTEER2_ATTRIBUTES, Message

TEMPLATES = Path(__file__).with_name("templates")


@cache
def rubric_question(attribute: str) -> str:
    """The body of engines/templates/logprob_<attribute>.txt (header lines, `---`, body)."""
    path = TEMPLATES / f"logprob_{attribute}.txt"
    head, sep, body = path.read_text(encoding="utf-8").partition("\n---\n")
    if not sep:
        raise ValueError(f"template {path}: no '---' line between header and body")
    return body.strip()


def rubric_version() -> str:
    """One lineage string for the five rubric templates, e.g. 'logprob@1.1.1.1.1'."""
    versions = []
    for attribute in HELPSTEER2_ATTRIBUTES:
        head = (TEMPLATES / f"logprob_{attribute}.txt").read_text(encoding="utf-8").partition("\n---\n")[0]
        fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
        versions.append(fields.get("version", "?").strip())
    return "logprob@" + ".".join(versions)


def reply_of(conversation: list[Message]) -> str:
    """The reply to grade; ValueError when the conversation does not end with one."""
    if not conversation or conversation[-1].get("role") != "assistant":
        raise ValueError("the conversation must end with an assistant turn to score")
    return conversation[-1].get("content") or ""


def digit_token_ids(tokenizer) -> list[list[int]]:
    """For each digit 0..4 the single-token spellings ('3', ' 3') the vocabulary has.

    Their probabilities are summed per digit, so a tokenizer that prefers ' 3' after the
    assistant header is read as well as one that prefers '3'.
    """
    digits = []
    for d in range(5):
        ids = {tuple(tokenizer.encode(s, add_special_tokens=False)) for s in (str(d), f" {d}")}
        singles = sorted(i[0] for i in ids if len(i) == 1)
        if not singles:
            raise ValueError(f"the judge's tokenizer has no single token for the digit {d}")
        digits.append(singles)
    return digits


@dataclass(frozen=True)
class Encoded:
    prefix_ids: list[int]
    reply_len: int
    uncond_ids: list[int]
    suffix_ids: dict[str, list[int]]


def _render(tokenizer, messages: list[Message], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _tail(full: str, head: str, what: str) -> str:
    if not full.startswith(head):
        raise ValueError(f"the chat template does not extend {what} as a prefix; the logprob judge needs it to")
    return full[len(head) :]


class PromptEncoder:
    """Turns conversations into `Encoded` ids with one tokenizer (chat template required)."""

    def __init__(self, tokenizer, attributes=HELPSTEER2_ATTRIBUTES):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the logprob judge needs a chat model with a chat template")
        self.tokenizer, self.attributes = tokenizer, tuple(attributes)
        self.digits = digit_token_ids(tokenizer)
        self._ids_cache: dict[str, list[int]] = {}

    def _ids(self, text: str) -> list[int]:
        # Template tails (headers, rubric turns) repeat across conversations: tokenize once.
        if text not in self._ids_cache:
            self._ids_cache[text] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._ids_cache[text]

    def encode(self, conversation: list[Message]) -> Encoded:
        reply = reply_of(conversation)
        context, tok = conversation[:-1], self.tokenizer
        asked = _render(tok, context, True) if context else ""
        full = _render(tok, conversation, False)
        reply_ids = list(tok(_tail(full, asked, "the conversation"), add_special_tokens=False)["input_ids"])
        empty = [{"role": "user", "content": ""}]
        uncond_head = _render(tok, empty, True)
        uncond_full = _render(tok, [*empty, {"role": "assistant", "content": reply}], False)
        _tail(uncond_full, uncond_head, "the empty question")
        suffixes = {}
        for attribute in self.attributes:
            asking = [*conversation, {"role": "user", "content": rubric_question(attribute)}]
            suffixes[attribute] = self._ids(_tail(_render(tok, asking, True), full, "the graded conversation"))
        return Encoded(
            prefix_ids=(self._ids(asked) if asked else []) + reply_ids,
            reply_len=len(reply_ids),
            uncond_ids=self._ids(uncond_head) + reply_ids,
            suffix_ids=suffixes,
        )
