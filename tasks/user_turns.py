"""Text a model wrote while playing the user: polite filler stripped, and the three ways it fails.

A small instruct model asked for "the user's next message" often answers instead, talks as the
assistant it was trained to be ("As an AI ...", its own system prompt), or hands back the words
of the request it was given. Such a turn is not a user turn. The prompts stage (follow-ups and
revised questions) and the dialogues stage (simulated users) both pass their user text through
`clean_user_turn`: filler off, then a reason when what is left is not something a user would say.

The detectors are deliberately conservative: a short correction without a question mark
("Make it shorter.") is a fine user turn; only a turn with no sign of a request that reads like
an answer (long, structured, or opening the way answers open) counts as answering.
"""

from __future__ import annotations

import re

from tasks.llm_step import Drop

_FLAGS = re.IGNORECASE

# A leading role label the model copied from the transcript it was shown.
_USER_LABEL = re.compile(r"^\s*(?:\*\*)?(?:user|human|me|customer)(?:\*\*)?\s*:\s*", _FLAGS)
_ASSISTANT_LABEL = re.compile(r"^\s*(?:\*\*)?(?:the )?(?:ai )?(?:assistant|ai|bot|gpt|smollm)(?:\*\*)?\s*:", _FLAGS)

# Whole leading sentences (or clauses up to a comma) that carry no request. Stripped repeatedly.
_LEADING_FILLER = [
    r"(?:thank you|thanks)(?: (?:so|very) much)?(?: for [^.!?\n]{0,80})?[.!,]*",
    r"(?:sure|certainly|of course|absolutely|okay|ok|alright)[,!.]*(?: i(?:'d| would) be (?:happy|glad) to[^.!?\n]{0,80}[.!]*)?",
    r"i(?:'d| would) be (?:happy|glad) to (?:help|assist)[^.!?\n]{0,80}[.!]*",
    r"(?:great|good|excellent|interesting) (?:question|point|answer|explanation)[.!,]*",
    r"that(?:'s| is| was) (?:very |really |so )?(?:helpful|great|interesting|useful|clear)[^.!?\n]{0,40}[.!,]*",
    r"(?:wow|hmm|oh|ah)[,!.]+",
    r"(?:here(?:'s| is) (?:my|the user's|the) (?:next |follow-up |follow up )?(?:message|question|reply|response)[^:\n]{0,40}:)",
]
_LEADING = re.compile(r"^\s*(?:" + "|".join(_LEADING_FILLER) + r")\s*", _FLAGS)
_TRAILING = re.compile(
    r"\s*(?:(?:thank you|thanks)(?: (?:so|very) much)?(?: in advance)?(?: for [^.!?\n]{0,60})?[.!]*"
    r"|i appreciate (?:it|your help)[.!]*)\s*$", _FLAGS)
_QUOTES = "\"'“”‘’`"
# A later line that opens with a role label: the model went on writing the transcript.
_NEXT_SPEAKER = re.compile(r"\n\s*(?:\*\*)?(?:you|user|human|me|assistant|ai|bot)(?:\*\*)?\s*:", _FLAGS)

# The assistant's voice: self-descriptions, service phrases, a system prompt read back.
_ASSISTANT_VOICE = re.compile(
    r"\bas an ai\b|\bi(?:'m| am) an? (?:ai|language model|assistant|helpful)\b|\bai (?:language )?model\b"
    r"|\byou(?:'re| are) an? (?:helpful |friendly )?(?:ai )?assistant\b|\bassistant named\b"
    r"|\bhow (?:can|may) i (?:help|assist) you\b|\bi(?:'d| would) be (?:happy|glad) to help\b"
    r"|\bhere(?:'s| is) (?:the|a|my) (?:rewritten|revised|improved|updated|new) (?:request|question|prompt|task|version)\b"
    r"|\bfeel free to ask\b|\blet me know if you (?:have|need)\b|\bi hope this helps\b", _FLAGS)

# Signs of a request: a question mark, words users ask with, or a sentence that opens as a request does.
_REQUEST = re.compile(
    r"\?|\b(?:please|can you|could you|would you|will you|i need|i want|i'd like|i would like|help me|tell me"
    r"|show me|give me|walk me through|i meant|i mean)\b"
    r"|(?:^|[.!]\s+)(?:what|how|why|which|when|where|who|is there|are there|should i|do you|write|make|add|list"
    r"|describe|compose|draft|create|rewrite|revise|suggest|summari[sz]e|compare|translate|shorten|expand"
    r"|include|use|keep|try|now|also|actually|instead|but|no|not|that's not|what about|and|explain)\b", _FLAGS)
_ANSWER_OPENING = re.compile(
    r"^\s*(?:here(?:'s| is| are)\b|the answer is\b|step 1\b|in summary\b|in conclusion\b|to (?:answer|solve)\b)",
    _FLAGS)
_STRUCTURE = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*•]|#{1,6})\s+\S")
ANSWER_WORDS = 60  # a message this long with no request in it is an answer, not a user turn


def strip_filler(text: str) -> str:
    """The turn without a copied "User:" label, the transcript the model went on to write after it,
    quotes, and polite filler at its start and end."""
    cleaned = _USER_LABEL.sub("", text.strip()).strip()
    cleaned = _NEXT_SPEAKER.split(cleaned, maxsplit=1)[0].strip().strip(_QUOTES).strip()
    while True:
        shorter = _LEADING.sub("", cleaned, count=1).strip()
        shorter = _TRAILING.sub("", shorter).strip().strip(_QUOTES).strip()
        if shorter == cleaned:
            return cleaned
        cleaned = shorter


def speaks_as_assistant(text: str) -> bool:
    return bool(_ASSISTANT_LABEL.match(text) or _ASSISTANT_VOICE.search(text))


def answers_instead_of_asking(text: str) -> bool:
    """No sign of a request, and it reads like an answer: long, structured, or opening as answers do."""
    if _ANSWER_OPENING.match(text):
        return True
    if _REQUEST.search(text):
        return False
    structured = len(_STRUCTURE.findall(text)) >= 2
    return structured or len(text.split()) > ANSWER_WORDS


def _shingles(text: str, size: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def _labels(template_text: str) -> list[str]:
    """The template's field labels ("How you write:" before "{style}"), lower-cased."""
    return [m.group(1).lower() for m in re.finditer(r"(?m)^([A-Za-z][^{}\n:]*\s[^{}\n:]*:)\s*\{", template_text)]


def echoes_template(text: str, template_text: str, size: int = 6) -> bool:
    """Whether the turn repeats `size` consecutive words of the fixed text of the request it was made
    from, or one of its field labels."""
    fixed = re.sub(r"\{[^{}]*\}", " | ", template_text)  # placeholders break runs: only our own words count
    lowered = text.lower()
    return bool(_shingles(text, size) & _shingles(fixed, size)) or any(l in lowered for l in _labels(template_text))


def user_turn_problem(text: str, template_text: str | None = None) -> str | None:
    """Why this (already stripped) text is not a user turn, or None when it is one."""
    if len(text) < 3:
        return "empty_after_stripping"
    if speaks_as_assistant(text):
        return "speaks_as_assistant"
    if template_text and echoes_template(text, template_text):
        return "echoes_template"
    if answers_instead_of_asking(text):
        return "answers_instead_of_asking"
    return None


def clean_user_turn(text: str, template_text: str | None = None) -> str | Drop:
    """The user turn with its filler stripped, or a drop whose reason says what it was instead."""
    if _ASSISTANT_LABEL.match(text.strip()):
        return Drop("speaks_as_assistant", text)
    cleaned = strip_filler(text)
    problem = user_turn_problem(cleaned, template_text)
    return Drop(problem, text) if problem else cleaned
