"""Transferability scores against references worked out by hand or by slow direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize

from learning.engine.algorithms.transfer import domain_classifier_weights, kmm_weights
from learning.engine.nets import Conv4
from learning.engine.transferability import (
    features_of,
    kendall_tau,
    leep,
    logme,
    logme_evidence,
    nce,
    prototype_probabilities,
)

# Six points, two features, two classes: the worked LogME example.
F6 = np.array([[1.0, 0.2], [0.8, -0.1], [1.2, 0.4], [-0.9, 0.3], [-1.1, -0.2], [-0.7, 0.1]])
Y6 = np.array([0, 0, 0, 1, 1, 1])


def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I/beta + F F'/alpha): the marginal likelihood written directly, no SVD, no fixed point."""
    n = len(y)
    cov = np.eye(n) / beta + f @ f.T / alpha
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (n * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(cov, y))


def grid_optimum(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Max of the direct evidence over a log grid of (alpha, beta), refined once around the best cell."""
    best = (-math.inf, 0.0, 0.0)
    lo_a, hi_a, lo_b, hi_b = -6.0, 6.0, -6.0, 6.0
    for points in (121, 121):
        for la in np.linspace(lo_a, hi_a, points):
            for lb in np.linspace(lo_b, hi_b, points):
                value = direct_log_evidence(f, y, 10**la, 10**lb)
                if value > best[0]:
                    best = (value, la, lb)
        step_a, step_b = (hi_a - lo_a) / (points - 1), (hi_b - lo_b) / (points - 1)
        lo_a, hi_a = best[1] - 2 * step_a, best[1] + 2 * step_a
        lo_b, hi_b = best[2] - 2 * step_b, best[2] + 2 * step_b
    return best


@pytest.mark.parametrize("cls", [0, 1])
def test_logme_fixed_point_reaches_the_evidence_maximum_found_by_grid_search(cls):
    # given the one-vs-rest target of one class of the worked example
    y = np.equal(Y6, cls).astype(float)
    # when the evidence is maximized by LogME's fixed-point updates and by brute-force grid search
    per_example, alpha, beta = logme_evidence(F6, y)
    grid_max, log_alpha, log_beta = grid_optimum(F6, y)
    # then both find the same maximum (the grid cannot beat the fixed point) at the same (alpha, beta)
    assert -6 < log_alpha < 6 and -6 < log_beta < 6, "the optimum must be inside the grid"
    assert per_example * 6 == pytest.approx(grid_max, abs=1e-6)
    assert per_example * 6 >= grid_max - 1e-9
    assert math.log10(alpha) == pytest.approx(log_alpha, abs=0.01)
    assert math.log10(beta) == pytest.approx(log_beta, abs=0.01)
    # and the fixed point's own evidence equals the direct formula at its (alpha, beta)
    assert per_example * 6 == pytest.approx(direct_log_evidence(F6, y, alpha, beta), abs=1e-9)


@pytest.mark.slow
def test_logme_averages_the_per_class_evidence_and_prefers_informative_features():
    # given the worked example and the same labels on features that carry no class information
    both = [grid_optimum(F6, np.equal(Y6, c).astype(float))[0] / 6 for c in (0, 1)]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(60, 2))
    labels = np.repeat([0, 1], 30)
    informative = noise + np.c_[3.0 * (2 * labels - 1), np.zeros(60)]
    # then LogME is the mean of the per-class maxima, and higher for the informative features
    assert logme(F6, Y6) == pytest.approx(np.mean(both), abs=1e-6)
    assert logme(informative, labels) > logme(noise, labels) + 0.2


def test_logme_handles_more_dimensions_than_examples():
    # given D > N (the features' null space must count in log|A| through alpha alone)
    rng = np.random.default_rng(1)
    f = rng.normal(size=(5, 8))
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    # when the fixed-point updates converge
    per_example, alpha, beta = logme_evidence(f, y)
    # then the evidence is that of the direct formula, and a local maximum of it: no (alpha, beta)
    # within 0.3 decades does better. (Here the global supremum lies at alpha -> infinity,
    # "ignore the features"; like MacKay's updates in general, LogME finds a stationary point.)
    assert per_example * 5 == pytest.approx(direct_log_evidence(f, y, alpha, beta), abs=1e-9)
    around = [
        direct_log_evidence(f, y, alpha * 10**da, beta * 10**db)
        for da in np.linspace(-0.3, 0.3, 13)
        for db in np.linspace(-0.3, 0.3, 13)
    ]
    assert per_example * 5 >= max(around) - 1e-9


def test_leep_matches_the_hand_computed_value():
    # given source probabilities over 2 source labels for 4 target examples of 2 target classes
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    target = np.array([0, 0, 1, 1])
    # by hand: P(y, z) = [[0.35, 0.15], [0.10, 0.40]], P(z) = [0.45, 0.55],
    # P(y | z) = [[7/9, 3/11], [2/9, 8/11]]; the expected empirical predictor gives the true
    # label probability 0.8*7/9 + 0.2*3/11 = 67/99, 0.6*7/9 + 0.4*3/11 = 57/99, 57/99, 67/99
    expected = (2 * math.log(67 / 99) + 2 * math.log(57 / 99)) / 4
    assert leep(probs, target) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(-0.471248, abs=1e-6)


def test_leep_is_zero_when_the_source_labels_determine_the_target():
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert leep(probs, np.array([1, 1, 0])) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="probability distribution"):
        leep(np.array([[0.5, 0.6]]), np.array([0]))


def test_nce_matches_the_hand_computed_value():
    # given (y, z) pairs (0,0) (0,0) (1,1) (1,1) (0,1) (1,0): P(y | z) is 2/3 on the diagonal,
    # so -H(Y|Z) = 4/6 log(2/3) + 2/6 log(1/3)
    source = np.array([0, 0, 1, 1, 1, 0])
    target = np.array([0, 0, 1, 1, 0, 1])
    expected = (4 / 6) * math.log(2 / 3) + (2 / 6) * math.log(1 / 3)
    assert nce(source, target) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(-0.636514, abs=1e-6)
    # a source labelling that determines the target scores 0; an unrelated one -H(Y) = -log 2
    assert nce(np.array([2, 2, 0, 0]), np.array([1, 1, 0, 0])) == pytest.approx(0.0, abs=1e-12)
    assert nce(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(-math.log(2), abs=1e-12)


def test_prototype_probabilities_are_the_softmax_of_minus_squared_distances():
    # class 0 at 0 and 2 (mean 1), class 1 at 4; a query at 2 is 1 and 4 (squared) away
    feats = np.array([[0.0], [2.0], [4.0]])
    probs = prototype_probabilities(feats, np.array([0, 0, 1]), np.array([[2.0]]))
    e1, e4 = math.exp(-1), math.exp(-4)
    np.testing.assert_allclose(probs, [[e1 / (e1 + e4), e4 / (e1 + e4)]], atol=1e-12)


def test_kendall_tau_counts_concordant_pairs():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        kendall_tau([1.0], [2.0])


def test_features_of_gives_the_backbone_embedding_in_fixed_chunks():
    torch.manual_seed(0)
    net = Conv4(hidden=8)
    images = (np.random.default_rng(0).random((10, 28, 28)) * 255).astype(np.uint8)
    feats = features_of(net, images, batch_size=5)
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    with torch.no_grad():
        expected = torch.cat([net.embed(x[:5]), net.embed(x[5:])]).double().numpy()
    assert feats.shape == (10, 8) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, expected, atol=1e-6)
    np.testing.assert_array_equal(features_of(net, images, batch_size=5), feats)


def test_domain_classifier_weights_estimate_the_true_density_ratio():
    # given source N(0, 1) and target N(1, 1): p_target(x) / p_source(x) = exp(x - 1/2)
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, size=(4000, 1))
    target = rng.normal(1.0, 1.0, size=(4000, 1))
    weights = domain_classifier_weights(source, target, l2=1e-3, max_weight=1e6)
    true = np.exp(source[:, 0] - 0.5)
    # then the estimate is close where the source has its mass
    core = np.abs(source[:, 0]) < 1.5
    np.testing.assert_allclose(weights[core], true[core], rtol=0.15)
    assert np.corrcoef(np.log(weights), np.log(true))[0, 1] > 0.999


def test_kmm_solves_its_quadratic_program():
    # given a tiny source and a target shifted to the right
    rng = np.random.default_rng(3)
    source = rng.normal(0.0, 1.0, size=(8, 2))
    target = rng.normal(0.7, 1.0, size=(5, 2))
    sigma, bound = 1.3, 4.0
    beta = kmm_weights(source, target, max_weight=bound, sigma=sigma, iterations=5000)
    # the same QP solved by a general-purpose constrained optimizer
    d_ss = ((source[:, None] - source[None]) ** 2).sum(-1)
    d_st = ((source[:, None] - target[None]) ** 2).sum(-1)
    k = np.exp(-d_ss / (2 * sigma**2))
    kappa = 8 / 5 * np.exp(-d_st / (2 * sigma**2)).sum(1)
    eps = (math.sqrt(8) - 1) / math.sqrt(8)
    cons = [
        {"type": "ineq", "fun": lambda b: 8 * (1 + eps) - b.sum()},
        {"type": "ineq", "fun": lambda b: b.sum() - 8 * (1 - eps)},
    ]
    ref = optimize.minimize(
        lambda b: 0.5 * b @ k @ b - kappa @ b,
        np.ones(8),
        jac=lambda b: k @ b - kappa,
        bounds=[(0, bound)] * 8,
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert ref.success
    np.testing.assert_allclose(beta, ref.x, atol=2e-3)
    assert (beta >= 0).all() and (beta <= bound).all()
    # and the points nearer the target get the larger weights
    nearer = ((source - target.mean(0)) ** 2).sum(1) < ((source - source.mean(0)) ** 2).sum(1)
    assert beta[nearer].mean() > beta[~nearer].mean()
