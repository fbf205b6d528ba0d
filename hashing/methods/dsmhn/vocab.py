"""Caption text as bag-of-words vectors over a vocabulary built from the training captions.

Terms are lower-cased word tokens plus word bigrams ("from left", "left to"). Bigrams matter:
"travels from right to left" and "travels from left to right" are the same bag of single words.
``bag_of_words`` reads the n-gram order from the vocabulary itself (the longest entry), so a
stored vocabulary is all that is needed to encode new captions the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

# Words, keeping hyphenated compounds ("lime-green", "five-pointed") and apostrophes as one token.
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (punctuation dropped)."""
    if not isinstance(text, str):
        raise ValueError(f"captions must be strings, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


def terms(text: str, ngram: int = 2) -> list[str]:
    """Unigrams and word n-grams up to ``ngram`` (joined by one space), in order of appearance."""
    if ngram < 1:
        raise ValueError(f"ngram must be at least 1, got {ngram}")
    tokens = tokenize(text)
    out = list(tokens)
    for n in range(2, ngram + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def build_vocabulary(captions: Iterable[str], min_count: int = 1, max_size: int = 5000,
                     ngram: int = 2) -> list[str]:
    """Terms seen at least ``min_count`` times, most frequent first (ties alphabetical), at most ``max_size``."""
    if min_count < 1 or max_size < 1:
        raise ValueError(f"min_count and max_size must be at least 1, got {min_count} and {max_size}")
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(terms(caption, ngram))
    kept = [term for term, count in counts.items() if count >= min_count]
    kept.sort(key=lambda term: (-counts[term], term))
    if not kept:
        raise ValueError("no vocabulary: the captions contain no words (or none reach min_count)")
    return kept[:max_size]


def known_terms(text: str, vocabulary: Sequence[str]) -> list[str]:
    """The terms of ``text`` that ``bag_of_words`` would count (an empty list means an all-zero vector)."""
    ngram = max(term.count(" ") + 1 for term in vocabulary)
    vocabulary_set = set(vocabulary)
    return [term for term in terms(text, ngram) if term in vocabulary_set]


def bag_of_words(captions: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """``float32 [N, V]`` term presence (0/1) of each caption; terms outside the vocabulary are ignored."""
    if isinstance(captions, str):
        raise ValueError("bag_of_words expects a list of captions, not one string")
    if not vocabulary:
        raise ValueError("the vocabulary is empty")
    column = {term: j for j, term in enumerate(vocabulary)}
    ngram = max(term.count(" ") + 1 for term in vocabulary)
    out = np.zeros((len(captions), len(vocabulary)), dtype=np.float32)
    for i, caption in enumerate(captions):
        hits = [column[term] for term in terms(caption, ngram) if term in column]
        out[i, hits] = 1.0
    return out
