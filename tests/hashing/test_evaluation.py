import json

import numpy as np
import pytest

import hashing.evaluation as evaluation
from hashing.bits import pack_bits
from hashing.evaluation import (
    average_precisions,
    evaluate_retrieval,
    label_relevance,
    mean_average_precision,
    pr_curve_hamming,
    precision_at_k,
    rank_matrix_cosine,
    rank_matrix_hamming,
    ranks_of_targets,
    recall_summary,
)


def codes_from_distances_to_zero(distances, n_bits=16):
    """Gallery codes whose Hamming distance to the all-zero query is given."""
    bits = np.zeros((len(distances), n_bits), dtype=bool)
    for row, d in enumerate(distances):
        bits[row, :d] = True
    return pack_bits(bits)


def test_rank_matrix_hamming_is_stable_on_ties():
    gallery = codes_from_distances_to_zero([3, 1, 0, 1, 3, 2])
    query = np.zeros((1, 2), dtype=np.uint8)
    order = rank_matrix_hamming(query, gallery)
    assert order.dtype == np.int64
    assert order.tolist() == [[2, 1, 3, 5, 0, 4]]


def test_rank_matrix_cosine_descending_and_stable():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    query = np.array([[1.0, 0.0], [0.0, -1.0]])
    order = rank_matrix_cosine(query, gallery)
    assert order[0].tolist() == [0, 2, 3, 1]  # rows 0 and 2 are the same direction: row order kept
    assert order[1].tolist() == [0, 2, 3, 1]


def test_ranks_and_recall_summary_on_tiny_ranking():
    order = np.array([[4, 0, 1, 2, 3], [1, 2, 3, 4, 0], [0, 1, 2, 3, 4]])
    ranks = ranks_of_targets(order, np.array([4, 0, 2]))
    assert ranks.tolist() == [1, 5, 3]
    summary = recall_summary(np.array([1, 2, 6, 11]))
    assert summary == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "MdR": 4.0, "MnR": 5.0}
    with pytest.raises(ValueError, match="not in its ranking"):
        ranks_of_targets(order[:, :2], np.array([4, 0, 2]))


def test_average_precision_of_hand_ranked_list():
    # Ranked relevance 1 0 1 0 0 1 -> AP = (1/1 + 2/3 + 3/6) / 3
    order = np.array([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    relevance = np.array(
        [
            [1, 0, 1, 0, 0, 1],
            [0, 0, 0, 0, 0, 0],  # no relevant item: excluded
            [0, 0, 0, 0, 0, 1],  # relevant item ranked first
        ],
        dtype=bool,
    )
    aps = average_precisions(order, relevance)
    assert aps[0] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert np.isnan(aps[1])
    assert aps[2] == 1.0
    assert mean_average_precision(order, relevance) == pytest.approx(((1 + 2 / 3 + 0.5) / 3 + 1) / 2)
    with pytest.raises(ValueError, match="no query"):
        mean_average_precision(order[1:2], relevance[1:2])


def test_precision_at_k_hand_checked():
    order = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]])
    relevance = np.array([[1, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    result = precision_at_k(order, relevance, ks=(1, 2, 4, 10))
    # query 0: 1, 1/2, 3/4; query 1 (ranked 3,2,1,0): 0, 0, 1/4; query 2 excluded; K=10 > N left out
    assert result == pytest.approx({1: 0.5, 2: 0.25, 4: 0.5})


def test_pr_curve_hamming_hand_checked():
    gallery = codes_from_distances_to_zero([0, 1, 1, 3])
    query = np.zeros((1, 2), dtype=np.uint8)
    relevance = np.array([[True, False, True, True]])
    curve = pr_curve_hamming(query, gallery, relevance)
    assert curve["radius"] == list(range(17))
    # r=0: {0} -> P 1, R 1/3; r=1,2: {0,1,2} -> P 2/3, R 2/3; r>=3: all -> P 3/4, R 1
    assert curve["precision"][:5] == pytest.approx([1.0, 2 / 3, 2 / 3, 0.75, 0.75])
    assert curve["recall"][:5] == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0, 1.0])
    assert curve["recall"][-1] == 1.0


def test_pr_curve_precision_undefined_where_nothing_is_retrieved():
    gallery = codes_from_distances_to_zero([2, 4])
    curve = pr_curve_hamming(np.zeros((1, 2), np.uint8), gallery, np.array([[True, False]]))
    assert curve["precision"][:3] == [None, None, 1.0]
    assert curve["recall"][:3] == [0.0, 0.0, 1.0]


def test_label_relevance_rules():
    q = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    g = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]])
    assert label_relevance(q, g, "any").tolist() == [
        [True, True, False, False],
        [True, True, True, False],
        [False, False, False, False],
    ]
    assert label_relevance(q, g, "exact").tolist() == [
        [True, False, False, False],
        [False, True, False, False],
        [False, False, False, False],
    ]
    assert label_relevance(np.array([0, 2]), np.array([2, 0, 0])).tolist() == [[False, True, True], [True, False, False]]
    with pytest.raises(ValueError, match="rule"):
        label_relevance(q, g, "some")


def synthetic_benchmark(n=120, dim=32, n_bits=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    centres = rng.standard_normal((4, dim)) * 2
    gallery = centres[labels] + rng.standard_normal((n, dim))
    queries = gallery + 0.3 * rng.standard_normal((n, dim))
    projection = rng.standard_normal((dim, n_bits))
    codes = lambda x: pack_bits(x @ projection > 0)  # noqa: E731
    multi_hot = np.eye(4, dtype=bool)[labels]
    return codes(queries), codes(gallery), queries, gallery, multi_hot


def test_evaluate_retrieval_matches_standalone_functions_and_is_json():
    qc, gc, qf, gf, labels = synthetic_benchmark()
    targets = np.arange(len(qc))[::-1].copy()  # gallery in a different order than queries
    gc, gf, labels_g = gc[targets], gf[targets], labels[targets]
    result = evaluate_retrieval(qc, gc, qf, gf, targets=np.argsort(targets), query_labels=labels, gallery_labels=labels_g)
    assert json.loads(json.dumps(result)) == result
    assert result["n_queries"] == result["n_gallery"] == 120 and result["n_bits"] == 32

    order_h = rank_matrix_hamming(qc, gc)
    order_f = rank_matrix_cosine(qf, gf)
    rel = label_relevance(labels, labels_g)
    paired = np.argsort(targets)
    expected_hash = recall_summary(ranks_of_targets(order_h, paired))
    for key, value in expected_hash.items():
        assert result["hash"][key] == pytest.approx(value)
    assert result["float"]["R@1"] == pytest.approx(recall_summary(ranks_of_targets(order_f, paired))["R@1"])
    assert result["hash"]["mAP@all"] == pytest.approx(mean_average_precision(order_h, rel))
    assert result["float"]["mAP@all"] == pytest.approx(mean_average_precision(order_f, rel))
    p_at_k = precision_at_k(order_h, rel, (1, 5, 10, 20, 50, 100))
    assert result["hash"]["P@K"] == pytest.approx({str(k): v for k, v in p_at_k.items()})
    assert result["hash"]["pr_curve"] == pr_curve_hamming(qc, gc, rel)
    assert "pr_curve" not in result["float"]
    assert result["hash"]["n_queries_without_relevant"] == 0
    # Float features are better than 32-bit codes on this data.
    assert result["float"]["mAP@all"] >= result["hash"]["mAP@all"]


def test_evaluate_retrieval_is_independent_of_query_chunking(monkeypatch):
    qc, gc, qf, gf, labels = synthetic_benchmark(seed=3)
    targets = np.arange(len(qc))
    full = evaluate_retrieval(qc, gc, qf, gf, targets=targets, query_labels=labels, gallery_labels=labels)
    monkeypatch.setattr(evaluation, "_CHUNK_ELEMENTS", 7 * len(gc))  # 7 queries per chunk
    chunked = evaluate_retrieval(qc, gc, qf, gf, targets=targets, query_labels=labels, gallery_labels=labels)
    # Same numbers up to float summation order.
    for key in ("radius", "precision", "recall"):
        assert chunked["hash"]["pr_curve"][key] == pytest.approx(full["hash"]["pr_curve"][key])
    del chunked["hash"]["pr_curve"], full["hash"]["pr_curve"]
    assert chunked == full


def test_tie_expected_metrics_when_all_codes_tie():
    n = 9
    qc = np.zeros((n, 2), np.uint8)
    gc = np.zeros((n, 2), np.uint8)
    result = evaluate_retrieval(qc, gc, None, None, targets=np.arange(n))
    # Stable order puts target q at rank q + 1; random tie-breaking expects rank (n + 1) / 2.
    assert result["hash"]["MnR"] == pytest.approx((n + 1) / 2)
    assert result["hash"]["R@1"] == pytest.approx(100 / n)
    assert result["hash"]["tie_expected"]["MnR"] == pytest.approx((n + 1) / 2)
    assert result["hash"]["tie_expected"]["R@1"] == pytest.approx(100 / n)
    assert result["hash"]["tie_expected"]["R@5"] == pytest.approx(500 / n)
    assert "float" not in result


def test_tie_expected_hand_checked():
    # Target 2 is at distance 1, tied with rows 1 and 3; row 0 is closer. Stable rank 3, expected 3.
    gallery = codes_from_distances_to_zero([0, 1, 1, 1, 5])
    query = np.zeros((1, 2), np.uint8)
    result = evaluate_retrieval(query, gallery, None, None, targets=np.array([2]))
    assert result["hash"]["MnR"] == 3.0
    assert result["hash"]["tie_expected"]["MnR"] == pytest.approx(1 + (3 + 1) / 2)
    assert result["hash"]["tie_expected"]["R@1"] == 0.0
    assert result["hash"]["tie_expected"]["R@5"] == 100.0


def test_evaluate_retrieval_labels_only_counts_queries_without_relevant():
    qc, gc, qf, gf, labels = synthetic_benchmark()
    q_labels = labels.copy()
    q_labels[:3] = False  # three queries with no label
    result = evaluate_retrieval(qc, gc, qf, gf, query_labels=q_labels, gallery_labels=labels, ks=(1, 10, 1000))
    assert result["hash"]["n_queries_without_relevant"] == 3
    assert set(result["hash"]["P@K"]) == {"1", "10"}
    assert "R@1" not in result["hash"] and "tie_expected" not in result["hash"]


def test_evaluate_retrieval_input_checks():
    qc, gc, qf, gf, labels = synthetic_benchmark()
    with pytest.raises(ValueError, match="targets"):
        evaluate_retrieval(qc, gc, qf, gf)
    with pytest.raises(ValueError, match="both"):
        evaluate_retrieval(qc, gc, qf, None, targets=np.arange(len(qc)))
    with pytest.raises(ValueError, match="range"):
        evaluate_retrieval(qc, gc, qf, gf, targets=np.full(len(qc), len(gc)))
