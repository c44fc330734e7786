"""A query's prediction depends on the support set and the query itself, never on the other
queries asked with it: adding, removing or reordering them leaves its probabilities as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.engine.algorithms import get_entry
from learning.engine.algorithms.transfer.common import classify_transfer
from learning.engine.nets import transductive_statistics
from learning.engine.predict import classify, load_predictor
from learning.engine.weights import load_model, weights_from_bytes
from tests.weights import model_weights

IMAGE_ALGORITHMS = ["protonet", "siamese", "maml", "fomaml", "reptile", "statistician"]


def _images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _predictor(algorithm: str):
    weights, config, saved = weights_from_bytes(model_weights(algorithm, seed=5))
    return load_predictor(weights, config, saved)


def _subsets(query: np.ndarray) -> list[tuple[list[int], np.ndarray]]:
    """(positions in ``query``, queries asked): all of them, a reordered subset, one alone."""
    return [(list(range(len(query))), query), ([4, 0, 2], query[[4, 0, 2]]), ([3], query[[3]])]


@pytest.mark.parametrize("algorithm", IMAGE_ALGORITHMS)
def test_a_querys_probabilities_do_not_depend_on_the_other_queries(algorithm):
    predictor = _predictor(algorithm)
    support, labels = _images(1, 5), [0, 1, 2, 3, 4]
    query = _images(2, 6)
    alone = {i: classify(predictor, support, labels, query[[i]])[0] for i in range(len(query))}
    for positions, asked in _subsets(query):
        probabilities = classify(predictor, support, labels, asked)
        for row, position in zip(probabilities, positions, strict=True):
            np.testing.assert_allclose(row, alone[position], rtol=0, atol=1e-6)
    # and with strangers mixed in, the known queries still get the same answers
    mixed = np.concatenate([_images(7, 4), query[[2]], _images(8, 9)])
    np.testing.assert_allclose(classify(predictor, support, labels, mixed)[4], alone[2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("algorithm", IMAGE_ALGORITHMS)
def test_the_transductive_protocol_does_depend_on_them(algorithm):
    # The test above can fail: under the papers' transductive statistics the same query's
    # probabilities change with its company.
    predictor = _predictor(algorithm)
    support, labels = _images(1, 5), [0, 1, 2, 3, 4]
    query = _images(2, 6)
    with transductive_statistics():
        together = classify(predictor, support, labels, query)
        alone = classify(predictor, support, labels, query[[0, 1]])
    assert np.abs(together[:2] - alone).max() > 1e-4


def test_transfer_models_score_each_query_on_its_own():
    weights, config, _ = weights_from_bytes(model_weights("finetune", seed=5))
    net = load_model(weights, config)
    xs = torch.from_numpy(_images(1, 5)).float().div(255).view(1, 5, 1, 28, 28)
    ys = torch.arange(5).view(1, 5)
    xq = torch.from_numpy(_images(2, 6)).float().div(255).view(1, 6, 1, 28, 28)
    with torch.no_grad():
        together = classify_transfer(net, xs, ys, xq, {})
        alone = classify_transfer(net, xs, ys, xq[:, [3]], {})
    torch.testing.assert_close(together[:, [3]], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("algorithm", IMAGE_ALGORITHMS)
def test_predicting_leaves_the_net_as_it_was_so_one_net_serves_every_request(algorithm):
    predictor = _predictor(algorithm)
    before = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    first = classify(predictor, _images(1, 5), [0, 1, 2, 3, 4], _images(2, 6))
    classify(predictor, _images(3, 5), [0, 1, 2, 3, 4], _images(4, 6))
    after = predictor.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(classify(predictor, _images(1, 5), [0, 1, 2, 3, 4], _images(2, 6)), first)


@pytest.mark.parametrize("algorithm", [*IMAGE_ALGORITHMS, "finetune"])
def test_episodes_scored_in_one_batch_score_as_each_would_alone(algorithm):
    # Evaluation scores many episodes per call; none may borrow another's statistics.
    weights, config, saved = weights_from_bytes(model_weights(algorithm, seed=5))
    net = load_model(weights, config)
    classify_batch = get_entry(saved, "image").classify
    adapt = config.get("adapt") or {}
    xs = torch.from_numpy(_images(1, 4 * 5)).float().div(255).view(4, 5, 1, 28, 28)
    xq = torch.from_numpy(_images(2, 4 * 3)).float().div(255).view(4, 3, 1, 28, 28)
    ys = torch.arange(5).repeat(4, 1)
    with torch.no_grad():
        together = classify_batch(net, xs, ys, xq, adapt)
        alone = torch.cat([classify_batch(net, xs[[b]], ys[[b]], xq[[b]], adapt) for b in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("algorithm", "shared"),
    [
        ("protonet", True),
        ("siamese", True),
        ("maml", False),
        ("fomaml", False),
        ("reptile", False),
        ("cnp", True),
        ("np", True),
    ],
)
def test_only_nets_that_predictions_never_swap_weights_into_are_shared_between_requests(algorithm, shared):
    assert _predictor(algorithm).shareable is shared


def test_adaptation_puts_its_weights_into_the_net_for_the_call_which_is_why_such_nets_are_not_shared():
    net = _predictor("maml").model
    seen = []
    net.head.register_forward_hook(lambda module, args, out: seen.append(bool((module.weight == 0).all())))
    zeros = {name: torch.zeros_like(p) for name, p in net.named_parameters()}
    torch.func.functional_call(net, zeros, (torch.zeros(2, 1, 28, 28),))
    assert seen == [True] and not bool((net.head.weight == 0).all())
