"""The `logprob` judge's readings on a local `transformers` causal LM, batched.

Per chunk of conversations (sorted by length, `batch_size` rows):

1. one forward pass over the left-padded `prefix_ids` (conversation + reply) with a KV cache:
   the reply tokens' log-probabilities given the conversation come out of it;
2. per attribute, one pass of only the rubric question's tokens on top of that cache, read at
   its last real token: the probabilities of the digits 0..4. The cache is cut back to the
   prefix after each question, so five questions cost five short passes, not five prefixes;
3. one pass over the left-padded `uncond_ids` (the reply after an empty question).

Left padding keeps every prefix ending at the same column, so the cache lines up for the
questions; position ids count real tokens only (as `generate` does), so a padded row computes
what it would alone. Only the hidden states that predict a reply token or a digit go through
the LM head: the full logits of a batch would not fit in memory.
All of this runs on the torch thread (engines/torch_thread.py), called by the engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engines.logprob_prompts import Encoded
from engines.logprob_signals import Reading

HEAD_ROWS = 512  # hidden states per LM-head call: bounds the (rows x vocab) logits in memory


def _left_pad(rows: Sequence[list[int]], pad: int, device):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def _positions(mask, offset=None):
    """Position of each token among its row's real tokens (pads get 1, as in `generate`)."""
    positions = mask.long().cumsum(-1) - 1
    if offset is not None:
        positions = positions + offset[:, None]
    return positions.masked_fill(mask == 0, 1)


def _token_logprobs(model, hidden, targets) -> list[float]:
    """log p(target) at each hidden state (rows of `hidden`), the LM head in slices."""
    import torch

    head, out = model.get_output_embeddings(), []
    for start in range(0, hidden.shape[0], HEAD_ROWS):
        logits = head(hidden[start : start + HEAD_ROWS]).float()
        picked = logits.gather(-1, targets[start : start + HEAD_ROWS, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(logits, dim=-1))
    return torch.cat(out).tolist() if out else []


def _reply_logprobs(model, rows: list[list[int]], reply_lens: list[int], pad: int, cache=None):
    """Per row the log-probabilities of its last `reply_len` tokens; the pass's cache and mask."""
    import torch

    ids, mask = _left_pad(rows, pad, model.device)
    out = model.base_model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                      past_key_values=cache, use_cache=cache is not None)
    width = ids.shape[1]
    # Token t is predicted by the hidden state at t-1; the reply is the last reply_len columns.
    # A reply's first token after an empty context (no column before it) is not read.
    picks = [(r, c) for r, n in enumerate(reply_lens) for c in range(max(width - n, 1), width)]
    if picks:
        index_r = torch.tensor([p[0] for p in picks], device=model.device)
        index_c = torch.tensor([p[1] for p in picks], device=model.device)
        flat = _token_logprobs(model, out.last_hidden_state[index_r, index_c - 1], ids[index_r, index_c])
    else:
        flat = []
    per_row, at = [], 0
    for r, n in enumerate(reply_lens):
        take = width - max(width - n, 1)
        per_row.append(flat[at : at + take])
        at += take
    return per_row, out.past_key_values, mask


def _digit_expectations(model, cache, prefix_mask, questions: list[list[int]], digits, pad: int):
    """Expected digit 0..4 per row after its question, on top of the prefix cache; cache restored."""
    import torch

    width = max(len(q) for q in questions)
    # Right padding: the question's pads come after its last real token, which is what we read.
    ids = torch.tensor([q + [pad] * (width - len(q)) for q in questions], device=model.device)
    mask = torch.tensor([[1] * len(q) + [0] * (width - len(q)) for q in questions], device=model.device)
    lengths = torch.tensor([len(q) for q in questions], device=model.device)
    full_mask = torch.cat([prefix_mask, mask], dim=-1)
    offset = prefix_mask.long().sum(-1)
    try:
        out = model.base_model(input_ids=ids, attention_mask=full_mask, position_ids=_positions(mask, offset),
                          past_key_values=cache, use_cache=True)
    finally:
        cache.crop(-width)  # negative: drop the question's tokens (the same call in old and new transformers)
    last = out.last_hidden_state[torch.arange(len(questions), device=model.device), lengths - 1]
    logits = model.get_output_embeddings()(last).float()
    # Renormalized over the five digits (every spelling of a digit summed): always defined.
    per_digit = torch.stack([torch.logsumexp(logits[:, ids_], dim=-1) for ids_ in digits], dim=-1)
    probs = per_digit.softmax(dim=-1)
    values = (probs * torch.arange(5, device=probs.device, dtype=probs.dtype)).sum(-1)
    return values.tolist()


def read_chunk(model, pad: int, digits, items: list[Encoded]) -> list[Reading]:
    """Readings for one chunk of encoded conversations, three kinds of pass (see the module doc)."""
    import torch

    with torch.inference_mode():
        reply_lens = [e.reply_len for e in items]
        from transformers import DynamicCache

        cond, cache, prefix_mask = _reply_logprobs(model, [e.prefix_ids for e in items], reply_lens, pad,
                                                   cache=DynamicCache())
        rubric: list[dict[str, float]] = [{} for _ in items]
        for attribute in items[0].suffix_ids:
            values = _digit_expectations(model, cache, prefix_mask, [e.suffix_ids[attribute] for e in items],
                                         digits, pad)
            for row, value in zip(rubric, values):
                row[attribute] = value
        del cache
        uncond, _, _ = _reply_logprobs(model, [e.uncond_ids for e in items], reply_lens, pad)
    readings = []
    for r, c, u in zip(rubric, cond, uncond):
        if any(math.isnan(v) for v in r.values()):
            raise FloatingPointError("the digit probabilities came out NaN")
        readings.append(Reading(rubric=r, cond_logprobs=c, uncond_logprobs=u))
    return readings
