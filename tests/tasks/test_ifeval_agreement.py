"""Our instruction checkers side by side with IFEval's own scorer (lm-evaluation-harness).

IFEval scores with `lm_eval.tasks.ifeval.utils.process_results(doc, [response])`: strict and
loose verdicts per instruction. We feed it the rows our planner makes (instruction ids and
kwargs, as the prompts stage stores them) and a corpus of responses, and require the same
verdicts as `tasks.instructions.verify` for every pair.

lm_eval is a dev-only install without its dependencies (see the Makefile); its IFEval files need
only nltk, langdetect and immutabledict. Its task registry (lm_eval/tasks/__init__.py) would pull
in datasets and torch, so the `lm_eval.tasks` package is entered by path instead. NLTK's English
Punkt tables, which lm_eval would download, are written from the same parameters we use.
"""

from __future__ import annotations

import os
import random
import sys
import types

import pytest

from tasks.instructions import INSTRUCTIONS, sample_instruction_ids, verify
from tests.tasks.test_instructions import CASES, EN

PROMPTS = ["Describe a lighthouse.", "Write a short note to a neighbour about a lost cat.",
           "Explain how tides form.", "Give advice to a new gardener."]

# Responses in the shapes IFEval's checkers react to: paragraphs, bullets, sections, titles,
# JSON, case, quotes, postscripts, placeholders, commas, languages, repeated prompts.
EXTRA_RESPONSES = [
    "<<The Lighthouse>>\n\nIt stands on the rock.\n\nIts lamp turns all night.\n\nP.S. Visit in May.",
    "* The lamp\n* The keeper\n* The storm\n\nSECTION 1\nwind\nSECTION 2\nrain",
    "Section 1\nThe sea rises twice a day.\nSection 2\nThe moon pulls it.\nSection 3\nThe sun helps.",
    '```json\n{"tide": "high", "hours": 12}\n```',
    '"Water your plants early, and keep the soil loose."',
    "DEAR NEIGHBOUR, OUR CAT IS LOST. PLEASE CALL [phone] IF YOU SEE HIM NEAR [street].",
    "dear neighbour our cat is lost please call us if you see him",
    "Describe a lighthouse. A tall tower with a lamp that guides ships at night.",
    "First answer: the moon.\n******\nSecond answer: the sun and the moon together.",
    "Paragraph one about river and lantern.\n***\nParagraph two about a harbor.\n***\nA third one.",
    "Harbor lights glow over the water tonight.\n\nGardens need water.\n\nRivers carry soil.",
    "La marée monte deux fois par jour à cause de la lune et du soleil.",
    "Plant in spring. Water daily. Mulch the beds. Prune in winter. Rest in summer. Any other questions?",
    "*Tides* are **waves** of very *long* period.\n\n*Keep* the **notes**.",
    "I think so.\nMy answer is yes.\nThanks!",
    "Short.",
    "The U.S. Coast Guard (USCG) and NOAA publish TIDE TABLES for every PORT.",
    EN,
    EN.upper(),
    "   ",
]


def _punkt_tables(root: str) -> None:
    """NLTK's punkt_tab/english files, written from the Punkt parameters our checkers load."""
    from nltk.tabdata import TabEncoder
    from punkt.data import english

    folder = os.path.join(root, "tokenizers", "punkt_tab", "english")
    os.makedirs(folder)
    encode = TabEncoder()
    contents = {"collocations.tab": encode.tups2tab(english.COLLOCATIONS),
                "sent_starters.txt": encode.set2txt(english.SENT_STARTERS),
                "abbrev_types.txt": encode.set2txt(english.ABBREV_TYPES),
                "ortho_context.tab": encode.ivdict2tab(english.ORTHO_CONTEXT)}
    for name, text in contents.items():
        with open(os.path.join(folder, name), "w", newline="") as handle:
            handle.write(text)


@pytest.fixture(scope="module")
def ifeval(tmp_path_factory):
    import langdetect
    import lm_eval
    import nltk

    root = str(tmp_path_factory.mktemp("nltk_data"))
    _punkt_tables(root)
    nltk.data.path.insert(0, root)
    langdetect.DetectorFactory.seed = 0  # as ours: the same text, the same language, every time
    tasks = types.ModuleType("lm_eval.tasks")
    tasks.__path__ = [os.path.join(os.path.dirname(lm_eval.__file__), "tasks")]
    saved = sys.modules.get("lm_eval.tasks")
    sys.modules["lm_eval.tasks"] = tasks
    try:
        from lm_eval.tasks.ifeval import utils
        yield utils
    finally:
        nltk.data.path.remove(root)
        for name in [n for n in sys.modules if n.startswith("lm_eval.tasks")]:
            del sys.modules[name]
        if saved is not None:
            sys.modules["lm_eval.tasks"] = saved


def _corpus() -> list[str]:
    responses = [text for _, passing, failing in CASES.values() for text in (*passing, *failing)]
    return responses + EXTRA_RESPONSES


def _disagreements(ifeval, prompt: str, ids: list[str], kwargs: list[dict], responses: list[str]) -> list[str]:
    doc = {"key": 0, "instruction_id_list": ids, "prompt": prompt, "kwargs": kwargs}
    found = []
    for response in responses:
        theirs = ifeval.process_results(doc, [response])
        for mode, loose in (("strict", False), ("loose", True)):
            ours = verify(response, ids, kwargs, loose=loose)
            if ours != theirs[f"inst_level_{mode}_acc"]:
                found.append(f"{mode} {ids} {kwargs} {response!r}: ours {ours}, IFEval {theirs[f'inst_level_{mode}_acc']}")
    return found


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_hand_written_cases_score_as_ifeval_scores_them(ifeval, instruction_id):
    kwargs = CASES[instruction_id][0]
    prompt = kwargs.get("prompt_to_repeat", PROMPTS[0])
    responses = _corpus()
    assert _disagreements(ifeval, prompt, [instruction_id], [kwargs], responses) == []
    # and the comparison has both verdicts in it: this id's own passing cases pass in IFEval too
    doc = {"key": 0, "instruction_id_list": [instruction_id], "prompt": prompt, "kwargs": [kwargs]}
    verdicts = [ifeval.process_results(doc, [r])["inst_level_strict_acc"][0] for r in responses]
    assert any(verdicts) and not all(verdicts)


@pytest.mark.parametrize("seed", range(8))
def test_planned_rows_score_as_ifeval_scores_them(ifeval, seed):
    """Rows as the planner draws them (1-3 compatible ids, drawn kwargs), against the whole corpus."""
    rng = random.Random(seed)
    responses = _corpus()
    problems: list[str] = []
    covered: set[str] = set()
    for _ in range(12):
        prompt = rng.choice(PROMPTS)
        ids = sample_instruction_ids(rng, rng.randint(1, 3))
        kwargs = [INSTRUCTIONS[i].make_kwargs(rng, prompt) for i in ids]
        covered.update(ids)
        problems += _disagreements(ifeval, prompt, ids, kwargs, rng.sample(responses, 25))
    assert problems == [], "\n".join(problems[:10])
    assert len(covered) >= 12  # the draws reach across the library, not one corner of it
