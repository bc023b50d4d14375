"""The three instruction-following prompt forms of the Nemotron-4 report, as chat messages.

- single-turn: the prompt followed by the instruction sentence(s);
- multi-turn: the same, worded so that the rules hold for this and every later turn;
- second-turn: user prompt, assistant answer, then "revise your previous answer so that ...".

Wording lives in `tasks/prompts/templates/instruction_*.txt`, each with an id and a version
that the stage stores on the row (`template_lineage`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal, Sequence

from tasks.instructions.registry import check_compatible, get_instruction
from tasks.templates import Template, TemplateError, load_template

Form = Literal["single_turn", "multi_turn", "second_turn"]
Message = dict[str, str]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SENTENCES_FILE = TEMPLATE_DIR / "instruction_sentences.txt"
FORM_FILES: dict[str, Path] = {
    form: TEMPLATE_DIR / f"instruction_{form}.txt"
    for form in ("single_turn", "multi_turn", "second_turn")
}


@cache
def _sentences() -> dict[str, str]:
    template = load_template(SENTENCES_FILE)
    sentences: dict[str, str] = {}
    for line in template.body.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        instruction_id, sep, sentence = line.partition(" = ")
        if not sep:
            raise TemplateError(f"template {SENTENCES_FILE.name}: line {line!r} is not 'id = sentence'")
        sentences[instruction_id.strip()] = sentence.strip().replace("\\n", "\n")
    return sentences


def _form_template(form: str) -> Template:
    if form not in FORM_FILES:
        raise ValueError(f"unknown prompt form {form!r}; allowed: {', '.join(FORM_FILES)}")
    return load_template(FORM_FILES[form])


def template_lineage(form: Form) -> dict[str, str]:
    """Template id and version of a form and of the sentence file, for the row's lineage."""
    form_template, sentences = _form_template(form), load_template(SENTENCES_FILE)
    return {
        "template_id": form_template.id,
        "template_version": form_template.version,
        "sentences_template_id": sentences.id,
        "sentences_template_version": sentences.version,
    }


def describe_instruction(instruction_id: str, kwargs: dict[str, Any] | None) -> str:
    """The sentence that asks for `instruction_id` with these kwargs."""
    instruction = get_instruction(instruction_id)
    fields = instruction.describe(kwargs or {})
    sentence = _sentences().get(instruction_id)
    if sentence is None:
        raise TemplateError(f"template {SENTENCES_FILE.name}: no sentence for {instruction_id!r}")
    try:
        return sentence.format(**fields)
    except KeyError as exc:
        raise TemplateError(
            f"template {SENTENCES_FILE.name}: sentence for {instruction_id} needs kwarg {exc}; "
            f"given: {', '.join(sorted(kwargs or {})) or '(nothing)'}"
        ) from None


def _instruction_block(instruction_ids: Sequence[str], kwargs_list: Sequence[dict | None]) -> str:
    if not instruction_ids:
        raise ValueError("at least one instruction id is needed")
    if len(instruction_ids) != len(kwargs_list):
        raise ValueError(f"{len(instruction_ids)} instruction ids but {len(kwargs_list)} kwargs dicts")
    check_compatible(instruction_ids)
    return "\n".join(describe_instruction(i, k) for i, k in zip(instruction_ids, kwargs_list))


def render_single_turn(
    prompt: str, instruction_ids: Sequence[str], kwargs_list: Sequence[dict | None]
) -> list[Message]:
    block = _instruction_block(instruction_ids, kwargs_list)
    content = _form_template("single_turn").render(prompt=prompt.strip(), instructions=block)
    return [{"role": "user", "content": content}]


def render_multi_turn(
    prompt: str, instruction_ids: Sequence[str], kwargs_list: Sequence[dict | None]
) -> list[Message]:
    block = _instruction_block(instruction_ids, kwargs_list)
    content = _form_template("multi_turn").render(prompt=prompt.strip(), instructions=block)
    return [{"role": "user", "content": content}]


def render_second_turn(
    first_prompt: str,
    first_answer: str,
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[dict | None],
) -> list[Message]:
    block = _instruction_block(instruction_ids, kwargs_list)
    revision = _form_template("second_turn").render(instructions=block)
    return [
        {"role": "user", "content": first_prompt.strip()},
        {"role": "assistant", "content": first_answer.strip()},
        {"role": "user", "content": revision},
    ]


def render_form(
    form: Form,
    prompt: str,
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[dict | None],
    first_answer: str | None = None,
) -> list[Message]:
    """One entry point for the stage, which picks the form from its config."""
    if form == "second_turn":
        if first_answer is None:
            raise ValueError("the second_turn form needs the assistant's first answer")
        return render_second_turn(prompt, first_answer, instruction_ids, kwargs_list)
    if form == "single_turn":
        return render_single_turn(prompt, instruction_ids, kwargs_list)
    if form == "multi_turn":
        return render_multi_turn(prompt, instruction_ids, kwargs_list)
    raise ValueError(f"unknown prompt form {form!r}; allowed: {', '.join(FORM_FILES)}")
