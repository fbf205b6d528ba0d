import numpy as np
import pytest

from hashing.bits import pack_bits
from hashing.evaluation import evaluate_retrieval
from hashing.methods.clip4hashing.retrieval import cross_modal_retrieval, expected_first_relevant


def test_single_relevant_item_with_ties():
    # query 0: target at distance 2, one item closer (1), two more tied at 2 -> rank 1 + (3 + 1)/2 = 3
    distances = np.array([[2, 1, 2, 2, 5]])
    relevance = np.array([[True, False, False, False, False]])
    rank, hits = expected_first_relevant(distances, relevance, ks=(1, 2, 3, 4))
    assert rank.tolist() == [3.0]
    # P(rank <= k) = (k - 1) / 3 inside the tied group of 3
    assert [hits[k][0] for k in (1, 2, 3, 4)] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def test_several_relevant_items_use_the_first_one_found():
    # 4 items tied at distance 0, 2 of them relevant: expected first position (4 + 1)/(2 + 1) = 5/3
    distances = np.array([[0, 0, 0, 0, 3]])
    relevance = np.array([[True, False, True, False, True]])
    rank, hits = expected_first_relevant(distances, relevance, ks=(1, 2, 3))
    assert rank[0] == pytest.approx(5 / 3)
    # miss in the top 1: 2/4; top 2: 2/4 * 1/3; top 3: impossible
    assert [hits[k][0] for k in (1, 2, 3)] == pytest.approx([0.5, 1 - 1 / 6, 1.0])


def test_matches_the_tie_expected_numbers_of_hashing_evaluation():
    rng = np.random.default_rng(0)
    videos = pack_bits(rng.random((60, 16)) > 0.5)
    texts = pack_bits(rng.random((60, 16)) > 0.5)
    ours = cross_modal_retrieval(videos, texts, np.arange(60), "hamming")["t2v"]
    reference = evaluate_retrieval(texts, videos, None, None, targets=np.arange(60))["hash"]["tie_expected"]
    for key in ("R@1", "R@5", "R@10", "MnR"):
        assert ours[key] == pytest.approx(reference[key])


def test_video_to_text_counts_the_best_caption_and_float_space_works():
    videos = np.array([[1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])  # caption 0 is of video 0 but looks like video 1
    video_of_text = np.array([0, 0, 1])
    metrics = cross_modal_retrieval(videos, texts, video_of_text, "cosine")
    # video 0 finds its caption 1 first; video 1 first meets caption 0 (of video 0), then its own caption 2
    assert metrics["v2t"]["R@1"] == 50.0 and metrics["v2t"]["MdR"] == 1.5
    assert metrics["t2v"]["R@1"] == pytest.approx(200 / 3)  # caption 0 ranks video 0 second
    assert metrics["t2v"]["MdR"] == 1.0


def test_invalid_pairing_is_refused():
    with pytest.raises(ValueError, match="index the 2 videos"):
        cross_modal_retrieval(np.eye(2), np.eye(2), np.array([0, 5]), "cosine")
