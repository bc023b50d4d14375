"""Build the calibration set: preference pairs whose right answer is known by construction.

Rows are RewardBench's: {"id", "subset", "prompt", "chosen", "rejected"}, all plain strings.
- math: our word-problem templates with seeded numbers; chosen works it out right, rejected makes
  one arithmetic slip and carries it to a wrong final answer (both checked when built);
- instruction_following: a prompt with one verifiable instruction; chosen follows it, rejected says
  the same thing but breaks it; a pair ships only when the strict IFEval checkers agree;
- easy_negatives: a real answer against an empty, an off-topic, a gibberish or a repetitive one;
- facts: a correct statement against a subtly wrong one.
The same seed gives the same rows, byte for byte (`python -m tasks.calibration.build OUT.jsonl`).
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.instructions.library import END_PHRASES
from tasks.calibration.wording import FACTS, TOPICS
from tasks.instructions.registry import verify

MATH_PAIRS, TOPICS_PER_INSTRUCTION, TOPICS_PER_NEGATIVE = 24, 3, 6
NAMES = ("Maya", "Leo", "Ana", "Sam", "Priya", "Tom", "Zoe", "Omar")
SLIPS = (1, -1, 2, -2, 10, -10)  # off by one, two or a carried ten: the slips people make


@dataclass(frozen=True)
class CalibrationPair:
    id: str
    subset: str
    prompt: str
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)  # how the pair can be re-checked; not shipped

    def row(self) -> dict[str, str]:
        return {"id": self.id, "subset": self.subset, "prompt": self.prompt, "chosen": self.chosen,
                "rejected": self.rejected}


# A math template draws its numbers, then `solve(slip)` works the problem with `slip` added to one
# intermediate result: (solution lines, final answer, the slipped value). slip 0 is the right solution.
Solve = Callable[[int], tuple[list[str], int, int]]


def _shopping(r: random.Random) -> tuple[str, Solve, str]:
    name, a, p, b, q = r.choice(NAMES), r.randint(2, 9), r.randint(2, 12), r.randint(2, 9), r.randint(3, 12)
    def solve(slip):
        x, y = a * p, b * q + slip
        return [f"The notebooks cost {a} × {p} = {x} dollars.", f"The pens cost {b} × {q} = {y} dollars.",
                f"Together that is {x} + {y} = {x + y} dollars."], x + y, y
    return (f"{name} buys {a} notebooks at {p} dollars each and {b} pens at {q} dollars each. "
            f"How many dollars does {name} spend in all?"), solve, f"{a} * {p} + {b} * {q}"


def _trip(r: random.Random) -> tuple[str, Solve, str]:
    v, t, w, s = r.randint(8, 20), r.randint(2, 5), r.randint(8, 20), r.randint(2, 4)
    def solve(slip):
        x, y = v * t, w * s + slip
        return [f"First part: {v} × {t} = {x} km.", f"Second part: {w} × {s} = {y} km.",
                f"In all: {x} + {y} = {x + y} km."], x + y, y
    return (f"A cyclist rides at {v} km per hour for {t} hours, then at {w} km per hour for {s} more hours. "
            "How many kilometres does she ride in all?"), solve, f"{v} * {t} + {w} * {s}"


def _garden(r: random.Random) -> tuple[str, Solve, str]:
    length, width = r.randint(6, 15), r.randint(4, 12)
    path = r.randint(5, length * width // 2)
    def solve(slip):
        area = length * width + slip
        return [f"The garden covers {length} × {width} = {area} square metres.",
                f"Without the path: {area} - {path} = {area - path} square metres."], area - path, area
    return (f"A rectangular garden is {length} metres long and {width} metres wide. A path covers {path} square "
            "metres of it. How many square metres are left for planting?"), solve, f"{length} * {width} - {path}"


def _muffins(r: random.Random) -> tuple[str, Solve, str]:
    d = r.choice((3, 4, 5))
    a, n = r.randint(1, d - 1), d * r.randint(6, 15)
    more = r.randint(1, max(1, (n - n // d * a) // 2))
    def solve(slip):
        unit = n // d + slip
        sold = unit * a + more
        return [f"{a}/{d} of {n} is {n} ÷ {d} × {a} = {unit} × {a} = {unit * a}.",
                f"She sells {unit * a} + {more} = {sold} muffins in all.",
                f"That leaves {n} - {sold} = {n - sold} muffins."], n - sold, unit
    return (f"A baker makes {n} muffins. She sells {a}/{d} of them in the morning and {more} more in the "
            "afternoon. How many muffins are left?"), solve, f"{n} - {n} // {d} * {a} - {more}"


def _sale(r: random.Random) -> tuple[str, Solve, str]:
    price, percent = 20 * r.randint(2, 15), r.choice((10, 20, 25, 30, 40, 50))
    def solve(slip):
        off = price * percent // 100 + slip
        return [f"The discount is {percent}% of {price} = {off} dollars.",
                f"The sale price is {price} - {off} = {price - off} dollars."], price - off, off
    return (f"A jacket costs {price} dollars and is sold at {percent}% off. What is the sale price in dollars?"
            ), solve, f"{price} - {price} * {percent} // 100"


def _printer(r: random.Random) -> tuple[str, Solve, str]:
    rate, hours, minutes = r.randint(3, 12), r.randint(1, 3), r.randint(5, 55)
    def solve(slip):
        total = hours * 60 + minutes + slip
        return [f"{hours} hours and {minutes} minutes is {hours} × 60 + {minutes} = {total} minutes.",
                f"It prints {total} × {rate} = {total * rate} pages."], total * rate, total
    return (f"A printer prints {rate} pages per minute. How many pages does it print in {hours} hours and "
            f"{minutes} minutes?"), solve, f"({hours} * 60 + {minutes}) * {rate}"


MATH_TEMPLATES = (_shopping, _trip, _garden, _muffins, _sale, _printer)
_ANSWER_RE = re.compile(r"The answer is (-?\d+)\.$")


def _check_math(pair: CalibrationPair, answer: int) -> None:
    """Chosen's final answer is the right one and rejected's is not; raise if the builder broke that."""
    def final(text: str) -> int:
        found = _ANSWER_RE.search(text)
        if not found:
            raise AssertionError(f"{pair.id}: no final answer line in {text!r}")
        return int(found.group(1))
    if final(pair.chosen) != answer or final(pair.rejected) == answer:
        raise AssertionError(f"{pair.id}: chosen must end with {answer} and rejected with something else")
    try:  # the ground-truth judge's own reading, where that module is installed
        from tasks.preferences.judges.answers import answers_match, extract_final_answer
    except ImportError:
        return
    if not answers_match(extract_final_answer(pair.chosen), str(answer)) or answers_match(
            extract_final_answer(pair.rejected), str(answer)):
        raise AssertionError(f"{pair.id}: the ground-truth judge reads the answers otherwise than built")


def _math(r: random.Random) -> list[CalibrationPair]:
    pairs = []
    for i in range(MATH_PAIRS):
        question, solve, expression = MATH_TEMPLATES[i % len(MATH_TEMPLATES)](r)
        lines, answer, _ = solve(0)
        slips = [s for s in r.sample(SLIPS, len(SLIPS)) if solve(s)[2] > 0 and 0 < solve(s)[1] != answer]
        wrong_lines, wrong, _ = solve(slips[0])
        pair = CalibrationPair(f"math-{i:03d}", "math", question, "\n".join([*lines, f"The answer is {answer}."]),
                               "\n".join([*wrong_lines, f"The answer is {wrong}."]),
                               {"expression": expression, "answer": answer, "wrong_answer": wrong})
        _check_math(pair, answer)
        pairs.append(pair)
    return pairs


INSTRUCTION_KINDS = ("lowercase", "capitals", "no_comma", "bullets", "end_phrase", "quotation", "postscript",
                     "title", "json")


def _instruction_cases(question: str, points: tuple[str, ...], r: random.Random) -> dict[str, tuple]:
    """Per kind: (instruction sentence, instruction id, kwargs, a response that follows it, one that breaks it)."""
    text, n, phrase, marker = " ".join(points), r.choice((2, 3)), r.choice(END_PHRASES), r.choice(("P.S.", "P.P.S"))
    title, note = question.rstrip("?"), "Ask me if you would like more detail."
    return dict(zip(INSTRUCTION_KINDS, [
        ("Write your entire answer in lowercase letters, with no capital letters at all.",
         "change_case:english_lowercase", {}, text.lower(), text),
        ("Write your entire answer in English using capital letters only.", "change_case:english_capital", {},
         text.upper(), text),
        ("Do not use any commas in your answer.", "punctuation:no_comma", {}, text.replace(",", ""), text),
        (f'Answer with exactly {n} markdown bullet points, each line starting with "* ".',
         "detectable_format:number_bullet_lists", {"num_bullets": n},
         "\n".join(f"* {p}" for p in points[:n]), "\n".join(f"* {p}" for p in points[:n + 1])),
        (f'Finish your answer with the exact phrase "{phrase}" and write nothing after it.', "startend:end_checker",
         {"end_phrase": phrase}, f"{text} {phrase}", f"{phrase} {text}"),
        ("Wrap your entire answer in double quotation marks.", "startend:quotation", {}, f'"{text}"', text),
        (f"At the end of your answer, add a postscript starting with {marker}", "detectable_content:postscript",
         {"postscript_marker": marker}, f"{text}\n\n{marker} {note}", f"{text}\n\n{note}"),
        ("Give your answer a title wrapped in double angular brackets, such as <<title>>.", "detectable_format:title",
         {}, f"<<{title}>>\n\n{text}", f"{title}\n\n{text}"),
        ("Give your entire answer as JSON, with no text outside the JSON.", "detectable_format:json_format", {},
         json.dumps({"answer": text}), f"answer: {text}"),
    ], strict=True))


def _instruction_following(r: random.Random) -> list[CalibrationPair]:
    pairs = []
    for kind in INSTRUCTION_KINDS:
        for question, points in r.sample(TOPICS, TOPICS_PER_INSTRUCTION):
            sentence, iid, kwargs, chosen, rejected = _instruction_cases(question, points, r)[kind]
            if all(verify(chosen, [iid], [kwargs])) and not all(verify(rejected, [iid], [kwargs])):
                pairs.append(CalibrationPair(f"instruction_following-{len(pairs):03d}", "instruction_following",
                                             f"{question} {sentence}", chosen, rejected,
                                             {"kind": kind, "instruction_ids": [iid], "kwargs": [kwargs]}))
    return pairs


def _gibberish(text: str, r: random.Random) -> str:
    words = ["".join(r.sample(w, len(w))) for w in text.lower().replace(",", "").replace(".", "").split()]
    return " ".join(r.sample(words, len(words)))


def _easy_negatives(r: random.Random) -> list[CalibrationPair]:
    pairs = []
    for kind in ("empty", "off_topic", "gibberish", "repetition"):
        for question, points in r.sample(TOPICS, TOPICS_PER_NEGATIVE):
            text = " ".join(points)
            others = [" ".join(p) for q, p in TOPICS if q != question]
            rejected = {"empty": "", "off_topic": r.choice(others), "gibberish": _gibberish(text, r),
                        "repetition": " ".join(text.split()[:3] + ["the"] * r.randint(30, 50))}[kind]
            pairs.append(CalibrationPair(f"easy_negatives-{len(pairs):03d}", "easy_negatives", question, text,
                                         rejected, {"kind": kind}))
    return pairs


def _facts(r: random.Random) -> list[CalibrationPair]:
    return [CalibrationPair(f"facts-{i:03d}", "facts", q, right, wrong)
            for i, (q, right, wrong) in enumerate(r.sample(FACTS, len(FACTS)))]


SUBSETS = {"math": _math, "instruction_following": _instruction_following, "easy_negatives": _easy_negatives,
           "facts": _facts}


def build_pairs(seed: int = 0) -> list[CalibrationPair]:
    """Every pair with its check data; each subset draws from its own seeded stream."""
    return [p for name, make in SUBSETS.items() for p in make(random.Random(f"calibration:{seed}:{name}"))]


def build_calibration_set(seed: int = 0) -> list[dict]:
    return [pair.row() for pair in build_pairs(seed)]


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m tasks.calibration.build OUT.jsonl [SEED]", file=sys.stderr)
        return 2
    rows = build_calibration_set(int(args[1]) if len(args) == 2 else 0)
    Path(args[0]).write_text(to_jsonl(rows), encoding="utf-8")
    print(f"wrote {len(rows)} pairs to {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
