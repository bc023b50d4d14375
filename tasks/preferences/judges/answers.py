"""Final answers of math responses: pull the answer out of the text, compare it with the reference.

Extraction (`extract_final_answer`), first rule that finds something wins:
1. the last `\\boxed{...}` (braces balanced, nesting allowed);
2. the last `#### answer` line (GSM8K);
3. the last "the answer is ..." / "final answer: ..." (any case), up to the end of the sentence or line;
4. the last number: integer, decimal, fraction (3/4), thousands commas, optional minus and %.

Comparison (`answers_match`) is math-verify's (symbolic and numeric), with these decisions:
- `1/2`, `0.5`, `\\frac{1}{2}`, `\\boxed{0.5}` are one answer; `1,000` is `1000`; `#### 72` is `72.0`.
- Percent: math-verify lets `50%` equal both `0.5` and `50` (GSM8K references drop the sign), and we
  keep that; `0.5` and `50` stay different.
- A reference that does not parse gives None (no verdict, a reason), never False.
- math-verify's timeouts use SIGALRM, which only works in the main thread: elsewhere (the stage's
  worker threads) they are off, and power towers such as `9^{9^9}`, which would never finish, and
  overlong texts are refused as unparseable instead.
"""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

_NUMBER = r"(?:(?<![\w.])-)?(?:\d+/\d+|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)%?"
_NUMBER_RE = re.compile(_NUMBER)
_PLAIN_NUMBER_RE = re.compile(rf"\s*{_NUMBER}\s*")
_GSM8K_RE = re.compile(r"####\s*([^\n]+)")
# "the answer is X." / "Final answer: X": the expression ends at a sentence stop (not a decimal point) or the line end
_PHRASE_RE = re.compile(
    r"(?:final\s+answer|the\s+answer)\s*(?:is|:|=)?\s*:?\s*(.+?)\s*(?:\.(?=\s|$)|\n|$)", re.IGNORECASE
)
_POWER_TOWER_RE = re.compile(r"\^\s*\{?[^{}\s+\-*/=,]*\^|\*\*[^+\-/=,]*\*\*")
_MAX_CHARS = 300  # longer than any final answer; bounds the time sympy may take without a timeout
_LATEX_HINT_RE = re.compile(r"[\\^{}_]")
_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word, not a \command
_BARE_PERCENT_RE = re.compile(r"(?<!\\)%")


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance."""
    for start in reversed([m.end() for m in re.finditer(r"\\boxed\s*\{", text)]):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


def _gsm8k(text: str) -> str | None:
    found = _GSM8K_RE.findall(text)
    return found[-1].strip() or None if found else None


def extract_final_answer(text: str) -> str | None:
    """The response's final answer as written (see the module docstring for the rules), or None."""
    for rule in (_last_boxed, _gsm8k):
        answer = rule(text)
        if answer:
            return answer
    phrases = [m.group(1).strip(" *$") for m in _PHRASE_RE.finditer(text)]  # markdown bold, math delimiters
    phrases = [p for p in phrases if p]
    if phrases:
        return phrases[-1]
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def _unwrap(text: str) -> str:
    """A reference or answer may still carry its wrapper (`\\boxed{..}`, `#### ..`): keep what is inside."""
    return _last_boxed(text) or _gsm8k(text) or text


def _timeout() -> int | None:
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list:
    """math-verify's reading of one answer; [] when it has none."""
    text = _unwrap(text).strip().rstrip(".").strip()
    text = text.removeprefix("$").removesuffix("$").strip()
    if not text or len(text) > _MAX_CHARS or _POWER_TOWER_RE.search(text):
        return []
    # LaTeX is read as LaTeX only between math delimiters (bare, `2\sqrt{3}` reads as 2), and there a bare %
    # starts a comment. Prose must not be delimited (`$see the figure$` reads as a product of letters):
    # as it is, math-verify picks the math out of it ("72 apples", "\frac{1}{2} cup").
    as_latex = "$" + _BARE_PERCENT_RE.sub(r"\\%", text) + "$"
    if _PLAIN_NUMBER_RE.fullmatch(text) or _PROSE_WORD_RE.search(text):
        readings = [text]
    elif _LATEX_HINT_RE.search(text):
        readings = [as_latex, text]
    else:
        readings = [text, as_latex]  # "x + 1": not found as text, read as math
    timeout = _timeout()
    for reading in readings:
        parsed = parse(reading, parsing_timeout=timeout)
        if parsed:
            return parsed
    return []


def answers_match(answer: str | None, reference: str) -> bool | None:
    """Is `answer` the reference's answer? None when the reference itself does not parse."""
    gold = _parse(reference)
    if not gold:
        return None
    if answer is None:
        return False
    target = _parse(answer)
    if not target:
        return False
    return bool(verify(gold, target, timeout_seconds=_timeout()))
