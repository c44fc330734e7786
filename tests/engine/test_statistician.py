"""The Neural Statistician: its divergences, its sets, its samples, and what it learns on Omniglot."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from learning.engine.algorithms import train
from learning.engine.algorithms.statistician import _as_sets, samples_like
from learning.engine.evaluation import evaluate_classifier
from learning.engine.nets import build_model
from learning.engine.statistician_nets import Gaussian, gaussian_kl, standard_normal_kl

HELD_OUT = ("Japanese_(katakana)", "Sanskrit", "Tagalog")
SMALL = {"arch": "statistician", "hidden": 8, "context_dim": 8, "latent_dim": 4, "mlp_hidden": 16}


def _gaussian(seed: int, shape=(3, 7)) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    return Gaussian(
        torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g).double()
    )


def _normal(q: Gaussian) -> Normal:
    return Normal(q.mean, torch.exp(0.5 * q.logvar))


def test_the_divergences_agree_with_torch_distributions():
    q, p = _gaussian(1), _gaussian(2)
    expected = kl_divergence(_normal(q), _normal(p)).sum(-1)
    torch.testing.assert_close(gaussian_kl(q, p), expected)
    standard = Gaussian(torch.zeros(3, 7, dtype=torch.float64), torch.zeros(3, 7, dtype=torch.float64))
    torch.testing.assert_close(standard_normal_kl(q), kl_divergence(_normal(q), _normal(standard)).sum(-1))
    assert gaussian_kl(q, q).abs().max() < 1e-12


def test_each_class_of_an_episode_becomes_one_set():
    # given 2 episodes of 3 classes, 4 images per class in shuffled order, each image filled with its label
    labels = torch.stack([torch.randperm(12) % 3, torch.randperm(12) % 3])
    x = (labels.float() + 10 * torch.arange(2).unsqueeze(1)).view(2, 12, 1, 1, 1).expand(2, 12, 1, 2, 2)
    # when regrouped
    sets = _as_sets(x, labels, 3)
    # then there are 6 sets of 4, each of one class of one episode, in episode then label order
    assert sets.shape == (6, 4, 1, 2, 2)
    values = sets.flatten(1)
    assert torch.equal(values.min(1).values, values.max(1).values)
    assert values[:, 0].tolist() == [0, 1, 2, 10, 11, 12]


def test_samples_are_images_drawn_from_the_support_sets_summary():
    torch.manual_seed(0)
    model = build_model(SMALL)
    a = torch.rand(3, 1, 28, 28)
    b = 1 - a
    first = samples_like(model, a, 4, seed=1)
    assert first.shape == (4, 1, 28, 28) and first.min() >= 0 and first.max() <= 1
    # the same seed draws the same images; another seed or another support set, others
    assert torch.equal(first, samples_like(model, a, 4, seed=1))
    assert not torch.allclose(first, samples_like(model, a, 4, seed=2))
    assert not torch.allclose(first, samples_like(model, b, 4, seed=1))


def test_samples_refuse_another_kind_of_model():
    with pytest.raises(TypeError, match="NeuralStatistician"):
        samples_like(build_model({"arch": "conv4", "hidden": 4}), torch.rand(2, 1, 28, 28), 1)


@pytest.mark.slow
def test_it_learns_to_tell_apart_alphabets_it_never_saw(omniglot_small1, omniglot_small2):
    # given a small Neural Statistician trained on small1's alphabets for 150 steps (no labels used
    # beyond which images form a set)
    config = {
        "algorithm": "statistician",
        "model": {"hidden": 32},
        "task": {"n_way": 5, "k_shot": 1, "query": 4},
        "steps": 150,
        "device": "cpu",
        "checkpoint_every": 0,
    }
    events: list[dict] = []
    result = train(config, omniglot_small1, on_progress=events.append)
    held_out = [c for c in range(omniglot_small2.num_classes) if omniglot_small2.class_groups[c] in HELD_OUT]
    # when scored on 5-way 1-shot episodes of three alphabets that small1 lacks
    score = evaluate_classifier(
        "statistician",
        result.weights,
        result.model_config,
        omniglot_small2,
        classes=held_out,
        n_way=5,
        k_shot=1,
        query=5,
        episodes=200,
        strict=False,
        seen_class_names=result.train_class_names,
    )
    # then its nearest-summary classification is well above chance (20%), and its ELBO improved
    assert score.mean - score.ci95 > 0.30, score
    assert events[-1]["loss"] < 0.8 * events[0]["loss"]
