import numpy as np
import pytest

from hashing.methods.dsmhn.vocab import bag_of_words, build_vocabulary, terms, tokenize


def test_tokenize_lowercases_and_keeps_hyphenated_words():
    assert tokenize("A Lime-green BOX, sliding: left!") == ["a", "lime-green", "box", "sliding", "left"]
    assert tokenize("") == []


def test_terms_add_bigrams():
    assert terms("from left to right") == ["from", "left", "to", "right", "from left", "left to", "to right"]
    assert terms("from left", ngram=1) == ["from", "left"]


def test_vocabulary_is_ordered_by_frequency_then_alphabet():
    vocabulary = build_vocabulary(["red box", "red ball", "blue box"], ngram=1)
    assert vocabulary == ["box", "red", "ball", "blue"]


def test_vocabulary_min_count_and_max_size():
    captions = ["red box", "red ball", "blue box"]
    assert build_vocabulary(captions, min_count=2) == ["box", "red"]
    assert build_vocabulary(captions, max_size=3) == ["box", "red", "ball"]
    with pytest.raises(ValueError, match="no vocabulary"):
        build_vocabulary(captions, min_count=5)


def test_bag_of_words_tells_directions_apart_through_bigrams():
    captions = ["travels from right to left", "travels from left to right"]
    vocabulary = build_vocabulary(captions)
    bow = bag_of_words(captions, vocabulary)
    assert bow.dtype == np.float32 and bow.shape == (2, len(vocabulary))
    unigrams = [j for j, term in enumerate(vocabulary) if " " not in term]
    assert np.array_equal(bow[0, unigrams], bow[1, unigrams])  # same words...
    assert not np.array_equal(bow[0], bow[1])  # ...different bigrams


def test_bag_of_words_is_presence_and_ignores_unknown_terms():
    bow = bag_of_words(["red red box", "green thing"], ["red", "box", "red box"])
    assert bow.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="list of captions"):
        bag_of_words("red box", ["red"])


def test_known_terms_are_what_the_bag_of_words_counts():
    from hashing.methods.dsmhn.vocab import bag_of_words, known_terms

    vocabulary = build_vocabulary(["a red circle moves left", "a blue square moves right"])
    assert known_terms("A RED car", vocabulary) == ["a", "red", "a red"]
    assert known_terms("zebra xylophone", vocabulary) == []
    assert bag_of_words(["zebra xylophone"], vocabulary).sum() == 0
