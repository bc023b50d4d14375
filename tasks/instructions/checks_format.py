"""Checkers about layout: paragraphs, bullets, sections, highlights, JSON, titles, repeats.

Same contract as `checks_content`: IFEval's verdicts, IFEval's kwarg names.
"""

from __future__ import annotations

import json
import re

CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# A `***` divider eats at most one whitespace character on each side.
_PARAGRAPH_DIVIDER = re.compile(r"\s?\*\*\*\s?")
# Star bullets must not start with `**` (that is bold text); dash lines always count.
_STAR_BULLET = re.compile(r"^\s*\*[^*].*$", flags=re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", flags=re.MULTILINE)
_SINGLE_HIGHLIGHT = re.compile(r"\*[^\n*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n*]*\*\*")
_PLACEHOLDER = re.compile(r"\[.*?\]")
_TITLE = re.compile(r"<<[^\n]+>>")
_FENCE_OPENERS = ("```json", "```Json", "```JSON", "```")


def number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    parts = _PARAGRAPH_DIVIDER.split(response)
    count = len(parts)
    for index, part in enumerate(parts):
        if part.strip():
            continue
        if index in (0, len(parts) - 1):
            count -= 1  # a divider at the very start or end does not make a paragraph
        else:
            return False  # two dividers in a row: an empty paragraph fails outright
    return count == num_paragraphs


def _first_word(paragraph: str) -> str:
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    letters = []
    for char in word:
        if char in ".,?!'\"":
            break
        letters.append(char.lower())
    return "".join(letters)


def nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    parts = response.split("\n\n")
    count = sum(1 for part in parts if part.strip())
    # IFEval indexes the raw split (empty chunks included) but bounds-checks the non-empty count.
    if nth_paragraph > count:
        return False
    paragraph = parts[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    return count == num_paragraphs and _first_word(paragraph) == first_word.lower()


def number_placeholders(response: str, *, num_placeholders: int) -> bool:
    return len(_PLACEHOLDER.findall(response)) >= num_placeholders


def postscript(response: str, *, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    # Not anchored to a line start: a marker anywhere in the text is accepted, as in IFEval.
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    found = len(_STAR_BULLET.findall(response)) + len(_DASH_BULLET.findall(response))
    return found == num_bullets


def constrained_response(response: str) -> bool:
    text = response.strip()
    return any(option in text for option in CONSTRAINED_OPTIONS)


def number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    singles = [m for m in _SINGLE_HIGHLIGHT.findall(response) if m.strip("*").strip()]
    doubles = [
        m for m in _DOUBLE_HIGHLIGHT.findall(response) if m.removeprefix("**").removesuffix("**").strip()
    ]
    return len(singles) + len(doubles) >= num_highlights


def multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    # The splitter is case-sensitive and used as a pattern; "at least" num_sections.
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, response)) - 1 >= num_sections


def json_format(response: str) -> bool:
    text = response.strip()
    for opener in _FENCE_OPENERS:
        text = text.removeprefix(opener)  # chained like IFEval: "```json" then "```" again
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def title(response: str) -> bool:
    return any(match.lstrip("<").rstrip(">").strip() for match in _TITLE.findall(response))


def repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def two_responses(response: str) -> bool:
    parts = response.split("******")
    answers = []
    for index, part in enumerate(parts):
        if part.strip():
            answers.append(part.strip())
        elif index not in (0, len(parts) - 1):
            return False
    return len(answers) == 2 and answers[0] != answers[1]
