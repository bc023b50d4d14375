"""Checkers about words, letters, length, language, case and punctuation.

Each function answers one IFEval instruction the way IFEval's published checker does,
quirks included (see the notes), so a score computed on our rows agrees with IFEval's.
The kwargs keep IFEval's names. An empty response is judged by `verify`, not here.
"""

from __future__ import annotations

import re
from collections import Counter

from tasks.instructions.text import (
    LanguageUnknown,
    count_sentences,
    count_words,
    detect_language,
    word_tokens,
)

RELATIONS = ("less than", "at least")


def compare(actual: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return actual < threshold
    if relation == "at least":
        return actual >= threshold
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def keywords_present(response: str, *, keywords: list[str]) -> bool:
    # IFEval searches each keyword anywhere, case-insensitive, without word boundaries:
    # "cat" is found in "concatenate".
    return all(re.search(re.escape(word), response, flags=re.IGNORECASE) for word in keywords)


def forbidden_words_absent(response: str, *, forbidden_words: list[str]) -> bool:
    # Unlike the keyword check, forbidden words are matched as whole words.
    return not any(
        re.search(rf"\b{re.escape(word)}\b", response, flags=re.IGNORECASE)
        for word in forbidden_words
    )


def keyword_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    # Substring occurrences, case-insensitive, as IFEval counts them.
    hits = re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE)
    return compare(len(hits), relation, frequency)


def letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    count = Counter(response.lower())[letter.strip().lower()]
    return compare(count, let_relation, let_frequency)


def response_language(response: str, *, language: str) -> bool:
    try:
        return detect_language(response) == language
    except LanguageUnknown:
        return True  # IFEval gives the benefit of the doubt when no language is detectable


def number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    return compare(count_sentences(response), relation, num_sentences)


def number_words(response: str, *, num_words: int, relation: str) -> bool:
    return compare(count_words(response), relation, num_words)


def english_capital(response: str) -> bool:
    if not response.isupper():
        return False
    try:
        return detect_language(response) == "en"
    except LanguageUnknown:
        return True


def english_lowercase(response: str) -> bool:
    if not response.islower():
        return False
    try:
        return detect_language(response) == "en"
    except LanguageUnknown:
        return True


def capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    # A token is a capital word when str.isupper() holds: "U.S." and "NASA's"-like tokens count.
    capitals = sum(1 for token in word_tokens(response) if token.isupper())
    return compare(capitals, capital_relation, capital_frequency)


def end_phrase(response: str, *, end_phrase: str) -> bool:
    # Surrounding double quotes are ignored and the comparison is case-insensitive.
    text = response.strip().strip('"').lower()
    return text.endswith(end_phrase.strip().lower())


def wrapped_in_quotes(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text.startswith('"') and text.endswith('"')


def no_comma(response: str) -> bool:
    # Only the ASCII comma counts; "，" (full-width) passes, as in IFEval.
    return "," not in response
