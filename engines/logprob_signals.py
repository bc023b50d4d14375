"""From a model's readings and the reply's text to the five HelpSteer2 attributes (0..4).

A 135M model reading a rubric is at chance; what it does know is how likely a reply is. The
judge therefore blends few, measured signals (tasks/calibration has the numbers):

- `rubric[a]`: the expected digit 0..4 the model gives attribute `a` when asked (renormalized
  over the five digits, so always defined);
- `fluency`: mean log-probability per reply token given the conversation (`cond`);
- `pmi`: `cond` minus the mean log-probability of the same tokens after an empty question:
  how much the question explains the reply (off-topic replies get no lift, or less than none);
- `repetition`: the share of word trigrams that already occurred earlier in the reply;
- `arithmetic`: claims like `4 x 6 = 30` in the reply that do not hold (cheap final-answer check);
- `words`: the reply's length.

The mapping (every step clamped to [0, 4]):

- quality q = 4 * (fluency + PMI_WEIGHT * pmi - FLUENCY_FLOOR) / (FLUENCY_TOP - FLUENCY_FLOOR),
  clamped: the likelihood reading put linearly on 0..4 (linear, not a sigmoid: the short right
  answers and the short wrong ones both sit near the top, a sigmoid flattened them together);
- helpfulness = (1 - RUBRIC_WEIGHT) * q + RUBRIC_WEIGHT * rubric, times the repetition factor;
- correctness = the same blend with the correctness rubric, capped at WRONG_ARITHMETIC_CAP when
  any arithmetic claim is false, times the repetition factor;
- coherence = the blend with the coherence rubric times the repetition factor (1 - repetition);
- complexity = the rubric blend times a length factor (a few words take no expertise);
- verbosity = log2(1 + words / 8): 8 words -> 1, 24 -> 2, 56 -> 3, 120+ -> 4 (a length
  reading, not a judgement: the negative default weight does the judging).

Rules where a signal is undefined: an empty (or whitespace-only) reply scores 0 on every
attribute; a reply with no scored tokens (cannot happen with a chat template, which always
adds an end-of-turn token) takes q = 0. Nothing here returns NaN.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from engines.types import HELPSTEER2_ATTRIBUTES

# nats per token: plain answers read at -0.3..-2 under SmolLM2-135M, gibberish at -6 and below.
FLUENCY_FLOOR, FLUENCY_TOP = -6.0, 0.0
PMI_WEIGHT = 0.5  # half weight: enough to sink off-topic replies, not enough to drown fluency
# The rubric alone is below chance on the calibration set (see the README): it keeps a small say.
RUBRIC_WEIGHT = 0.1
WRONG_ARITHMETIC_CAP = 1.0
SHORT_WORDS = 4  # complexity reaches its full rubric value from this many words up

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_CLAIM = re.compile(rf"{_NUMBER}\s*([-+*/x×÷])\s*{_NUMBER}\s*=\s*{_NUMBER}")


@dataclass(frozen=True)
class Reading:
    """What a backend read for one reply (see engines/logprob_prompts.py for the prompts)."""

    rubric: dict[str, float]  # expected digit per attribute, 0..4
    cond_logprobs: list[float]  # log p(reply token | conversation), per reply token
    uncond_logprobs: list[float]  # log p(reply token | empty question), same tokens


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def repetition(text: str) -> float:
    """Share of word trigrams seen earlier in the text (0 fresh .. 1 one phrase over and over).

    >>> repetition("the the the the the the")
    0.75
    >>> repetition("a short plain sentence")
    0.0
    """
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(grams) < 2:
        return 0.0
    seen, repeated = set(), 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(grams)


def false_arithmetic(text: str) -> int:
    """How many `a op b = c` claims in the text are wrong (1% tolerance for rounding).

    >>> false_arithmetic("4 x 6 = 24 and 9 - 3 = 5")
    1
    """
    wrong = 0
    for a, op, b, c in _CLAIM.findall(text):
        x, y, z = float(a), float(b), float(c)
        if op in "/÷" and y == 0:
            continue
        value = {"+": x + y, "-": x - y, "*": x * y, "x": x * y, "×": x * y}.get(op, x / y if y else 0.0)
        wrong += abs(value - z) > 0.01 * max(1.0, abs(value))
    return wrong


def _clamp(value: float) -> float:
    return min(4.0, max(0.0, value))


def signals(reading: Reading, reply: str) -> dict[str, float]:
    """The raw signals, for reports and calibration (fluency/pmi absent when undefined)."""
    out: dict[str, float] = {
        "words": float(len(_WORD.findall(reply))),
        "repetition": repetition(reply),
        "false_arithmetic": float(false_arithmetic(reply)),
    }
    cond, uncond = _mean(reading.cond_logprobs), _mean(reading.uncond_logprobs)
    if cond is not None:
        out["fluency"] = cond
        if uncond is not None:
            out["pmi"] = cond - uncond
    return out


def quality(found: dict[str, float]) -> float:
    """The likelihood reading on 0..4 (the `q` of the module doc)."""
    if "fluency" not in found:
        return 0.0
    z = found["fluency"] + PMI_WEIGHT * found.get("pmi", 0.0)
    return _clamp(4.0 * (z - FLUENCY_FLOOR) / (FLUENCY_TOP - FLUENCY_FLOOR))


def attributes(reading: Reading, reply: str) -> dict[str, float]:
    """The five attributes 0..4 from one reading, by the rules of the module doc."""
    if not reply.strip():
        return {name: 0.0 for name in HELPSTEER2_ATTRIBUTES}
    found = signals(reading, reply)
    q = quality(found)
    kept = 1.0 - found["repetition"]

    def blend(name: str) -> float:
        return (1.0 - RUBRIC_WEIGHT) * q + RUBRIC_WEIGHT * _clamp(reading.rubric[name])

    correctness = blend("correctness")
    if found["false_arithmetic"]:
        correctness = min(correctness, WRONG_ARITHMETIC_CAP)
    length = min(1.0, found["words"] / SHORT_WORDS)
    return {
        "helpfulness": _clamp(blend("helpfulness") * kept),
        "correctness": _clamp(correctness * kept),
        "coherence": _clamp(blend("coherence") * kept),
        "complexity": _clamp(_clamp(reading.rubric["complexity"]) * length),
        "verbosity": _clamp(math.log2(1.0 + found["words"] / 8.0)),
    }
