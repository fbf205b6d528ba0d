import math

import pytest
import torch
from torch import nn

from hashing.methods.dsmhn.config import LossWeights
from hashing.methods.dsmhn.losses import (
    bit_balance_loss,
    dsmhn_loss,
    label_groups,
    label_preservation_loss,
    label_similarity,
    pairwise_likelihood_loss,
    quantization_loss,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_label_similarity_any_and_cosine():
    a = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    assert label_similarity(a, b).tolist() == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    cosine = label_similarity(a, b, "cosine")
    expected = [[1 / math.sqrt(2), 1 / 2], [0.0, 1 / math.sqrt(2)], [0.0, 0.0]]
    assert torch.allclose(cosine, torch.tensor(expected))


def test_pairwise_likelihood_by_hand():
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    v = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # theta = u v^T / 2 = [[1, 0], [0, -1]]
    expected = (
        (softplus(1.0) - 1.0)  # similar, theta 1
        + softplus(0.0)  # dissimilar, theta 0
        + softplus(0.0)  # dissimilar, theta 0
        + (softplus(-1.0) + 1.0)  # similar, theta -1
    ) / 4
    assert pairwise_likelihood_loss(u, v, s).item() == pytest.approx(expected, rel=1e-6)


def test_pairwise_likelihood_is_finite_for_huge_inner_products():
    u = torch.full((2, 4), 100.0)
    loss = pairwise_likelihood_loss(u, -u, torch.ones(2, 2))  # theta = -20000, similar: loss ~ 20000
    assert torch.isfinite(loss) and loss.item() == pytest.approx(20000.0)
    assert pairwise_likelihood_loss(u, u, torch.ones(2, 2)).item() == pytest.approx(0.0, abs=1e-6)


def test_pairwise_likelihood_checks_shapes():
    with pytest.raises(ValueError, match="shape"):
        pairwise_likelihood_loss(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 2))


def test_label_preservation_by_hand():
    classifier = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(torch.eye(2))
    codes = torch.tensor([[1.0, -1.0]])  # logits = [1, -1]
    labels = torch.tensor([[1, 0]], dtype=torch.bool)
    # -log sigmoid(1) - log(1 - sigmoid(-1)) = 2 * softplus(-1), summed over labels, mean over items
    assert label_preservation_loss(codes, labels, classifier).item() == pytest.approx(2 * softplus(-1.0), rel=1e-6)


def test_label_groups_are_the_prefixes_shared_by_two_or_more_labels():
    labels = ["shape:circle", "colour:red", "shape:star", "outdoor", "motion:left", "shape:", ":odd"]
    # "motion" has one label (a softmax over one label says nothing); "shape:" and ":odd" are not group:value
    assert label_groups(labels) == [[0, 2]]
    assert label_groups(["cat", "dog"]) == []


def test_grouped_label_preservation_by_hand():
    classifier = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(torch.eye(3))
    groups = [[0, 1]]  # columns 0 and 1 are one group, column 2 stands alone
    codes = torch.tensor([[1.0, -1.0, 0.5], [1.0, -1.0, 0.5], [1.0, -1.0, 0.5]])  # logits = codes
    labels = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    log_p = torch.log_softmax(torch.tensor([1.0, -1.0]), dim=0).tolist()
    expected = [
        -log_p[0] + softplus(-0.5),  # the group's positive is column 0; column 2 positive
        -(log_p[0] + log_p[1]) / 2 + softplus(0.5),  # two positives in the group share the target
        0.0 + softplus(0.5),  # no positive in the group: only column 2's sigmoid term
    ]
    loss = label_preservation_loss(codes, labels, classifier, groups)
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    # without groups it is the sigmoid loss of every column
    sigmoid = label_preservation_loss(codes, labels, classifier)
    assert sigmoid.item() == pytest.approx(label_preservation_loss(codes, labels, classifier, ()).item())
    assert sigmoid.item() != pytest.approx(loss.item())


def test_dsmhn_loss_uses_groups_only_when_asked():
    torch.manual_seed(0)
    u, v = torch.tanh(torch.randn(4, 8)), torch.tanh(torch.randn(4, 8))
    labels = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.bool)
    classifier = nn.Linear(8, 3)
    groups = [[0, 1]]
    _, sigmoid_terms = dsmhn_loss(u, v, labels, classifier, LossWeights(label_loss="sigmoid"), groups)
    _, grouped_terms = dsmhn_loss(u, v, labels, classifier, LossWeights(label_loss="grouped"), groups)
    expected = (label_preservation_loss(u, labels, classifier, groups)
                + label_preservation_loss(v, labels, classifier, groups))
    assert grouped_terms["label"] == pytest.approx(expected.item(), rel=1e-6)
    assert sigmoid_terms["label"] == pytest.approx(
        (label_preservation_loss(u, labels, classifier) + label_preservation_loss(v, labels, classifier)).item())


def test_quantization_and_balance_by_hand():
    u = torch.tensor([[0.5, -1.0], [-0.5, 0.25]])
    assert quantization_loss(u).item() == pytest.approx((0.25 + 0 + 0.25 + 0.5625) / 4)
    # bit means: 0 and -0.375
    assert bit_balance_loss(u).item() == pytest.approx((0 + 0.375**2) / 2)
    assert quantization_loss(torch.tensor([[1.0, -1.0]])).item() == 0.0


def test_dsmhn_loss_weights_terms():
    torch.manual_seed(0)
    u, v = torch.tanh(torch.randn(4, 8)), torch.tanh(torch.randn(4, 8))
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [1, 0]], dtype=torch.bool)
    classifier = nn.Linear(8, 2)
    weights = LossWeights(w_similarity=2.0, w_label=0.5, w_quantization=0.3, w_balance=0.7)
    total, terms = dsmhn_loss(u, v, labels, classifier, weights)
    assert set(terms) == {"similarity", "label", "quantization", "balance"}
    expected = 2.0 * terms["similarity"] + 0.5 * terms["label"] + 0.3 * terms["quantization"] + 0.7 * terms["balance"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert terms["similarity"] == pytest.approx(pairwise_likelihood_loss(u, v, label_similarity(labels, labels)).item())
    assert terms["balance"] == pytest.approx(bit_balance_loss(u).item() + bit_balance_loss(v).item())
    total.backward()  # differentiable end to end
    assert classifier.weight.grad is not None
