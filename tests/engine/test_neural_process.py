"""Conditional and latent neural processes: the model, training through the shared loop, resume."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from learning.engine.algorithms import train, validate_config
from learning.engine.checkpoints import CheckpointFormatError, InMemoryCheckpointStore
from learning.engine.config import ConfigError
from learning.engine.data import ImageArrays
from learning.engine.functions import FunctionFamily, FunctionTasks, heldout_tasks
from learning.engine.gp import gaussian_log_density
from learning.engine.neural_process_nets import (
    GaussianLatent,
    NeuralProcess,
    NPConfig,
    build_neural_process,
    gaussian_log_prob,
)
from learning.engine.regression_eval import np_task_metrics
from learning.engine.weights import load_model, weights_from_bytes, weights_to_bytes

torch.set_num_threads(1)

GP = FunctionFamily.from_spec("gp-1d")
SMALL = {"hidden": 48, "encoder_layers": 3, "decoder_layers": 3, "latent_dim": 16}


@pytest.fixture(scope="module")
def heldout() -> FunctionTasks:
    return heldout_tasks(GP, seed=0, n_tasks=200, k_context=10, n_target=40)


def _untrained(kind: str, seed: int = 0, **model: object) -> NeuralProcess:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_neural_process({"arch": "neural_process", "kind": kind, **SMALL, **model})


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "over_prior"), [("cnp", 0.15), ("np", 0.07)])
def test_a_short_run_clearly_improves_heldout_log_likelihood(
    kind: str, over_prior: float, heldout: FunctionTasks
) -> None:
    # given
    config = {
        "algorithm": kind,
        "steps": 600,
        "lr": 2e-3,
        "seed": 0,
        "checkpoint_every": 0,
        "model": SMALL,
        "task": {"k_context_max": 20, "n_target": 20},
        "validation": {"tasks": 64},
    }
    before = np_task_metrics(_untrained(kind), heldout, latent_samples=8).log_lik.mean()
    # Ignoring the context, the best one can do is the GP prior's marginal N(0, 1 + noise).
    prior_std = math.sqrt(GP.gp_params.signal_variance + GP.gp_params.observation_variance)
    prior = gaussian_log_density(heldout.y_tgt.astype(np.float64), 0.0, prior_std).mean()
    # when
    result = train(config, GP)
    model = load_model(result.weights, result.model_config)
    after = np_task_metrics(model, heldout, latent_samples=8)
    # then: the net calibrates (beats its untrained self) and uses the context (beats the prior)
    assert result.steps_done == 600 and not result.stopped
    assert after.log_lik.mean() > before + 0.3, (before, after.log_lik.mean())
    assert after.log_lik.mean() > prior + over_prior, (prior, after.log_lik.mean())
    assert after.mse.mean() < 0.9  # the prior's MSE is the signal variance plus noise, about 1.0
    assert result.metrics["val_log_lik"] > prior
    assert result.model_config["arch"] == "neural_process" and result.algorithm == kind


def test_np_resume_after_a_stop_is_bitwise_the_uninterrupted_run() -> None:
    # given
    config = {
        "algorithm": "np",
        "steps": 30,
        "seed": 3,
        "checkpoint_every": 7,
        "model": SMALL,
        "validation": {"tasks": 0},
    }
    full = train(config, GP)
    store = InMemoryCheckpointStore()
    polls = iter([False] * 12 + [True] * 1000)
    # when: stopped after 12 steps, then run again on the same store
    first = train(config, GP, should_stop=lambda: next(polls), checkpoint=store)
    resumed = train(config, GP, checkpoint=store)
    # then
    assert first.stopped and first.steps_done == 12
    assert store.saves[:3] == [7, 12, 14]
    assert resumed.steps_done == 30 and not resumed.stopped
    assert full.weights.keys() == resumed.weights.keys()
    for name, tensor in full.weights.items():
        assert torch.equal(tensor, resumed.weights[name]), name


def test_resuming_with_another_function_family_is_refused() -> None:
    store = InMemoryCheckpointStore()
    config = {"algorithm": "cnp", "steps": 3, "model": SMALL, "validation": {"tasks": 0}}
    train(config, GP, checkpoint=store, should_stop=iter([False, True]).__next__)
    with pytest.raises(CheckpointFormatError, match="different config"):
        train(config, FunctionFamily.from_spec("gp-1d", {"length_scale": 0.2}), checkpoint=store)


def test_progress_events_carry_the_loss_and_the_elbo_terms() -> None:
    events: list[dict] = []
    config = {"algorithm": "np", "steps": 5, "model": SMALL, "validation": {"tasks": 0}}
    train(config, GP, on_progress=events.append)
    assert events[-1]["step"] == 5 and events[-1]["total"] == 5
    metrics = events[-1]["metrics"]
    assert metrics["kl"] >= 0
    assert events[-1]["loss"] == pytest.approx(metrics["kl"] - metrics["log_lik"], rel=1e-6)


def test_trained_weights_round_trip_through_safetensors(heldout: FunctionTasks) -> None:
    # given
    result = train({"algorithm": "np", "steps": 3, "model": SMALL, "validation": {"tasks": 0}}, GP)
    # when
    weights, model_config, algorithm = weights_from_bytes(
        weights_to_bytes(result.weights, result.model_config, result.algorithm)
    )
    model = load_model(weights, model_config)
    # then
    assert algorithm == "np" and model_config["kind"] == "np"
    a = np_task_metrics(model, heldout.select(slice(0, 20)), latent_samples=4, seed=5)
    b = np_task_metrics(
        load_model(result.weights, result.model_config),
        heldout.select(slice(0, 20)),
        latent_samples=4,
        seed=5,
    )
    np.testing.assert_array_equal(a.log_lik, b.log_lik)


def test_cnp_is_invariant_to_context_order_and_accepts_any_context_size(heldout: FunctionTasks) -> None:
    model = _untrained("cnp")
    x_ctx, y_ctx, x_tgt, _ = (torch.from_numpy(a) for a in heldout.select(slice(0, 4)))
    perm = torch.randperm(x_ctx.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean, std = model.predict(x_ctx, y_ctx, x_tgt)
        mean_p, std_p = model.predict(x_ctx[:, perm], y_ctx[:, perm], x_tgt)
        mean_1, _ = model.predict(x_ctx[:, :1], y_ctx[:, :1], x_tgt)
    assert mean.shape == (1, 4, 40, 1)
    torch.testing.assert_close(mean_p, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std_p, std, rtol=1e-5, atol=1e-6)
    assert mean_1.shape == mean.shape and not torch.allclose(mean_1, mean)


def test_predictive_std_never_drops_below_its_floor() -> None:
    model = _untrained("cnp", min_std=0.05)
    with torch.no_grad():
        for p in model.decoder[-1].parameters():
            p.fill_(-1e3)  # drives the raw std output to minus a very large number
        _, std = model.predict(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.ones(2, 5, 1))
    assert torch.all(std >= 0.05) and torch.all(std < 0.0501)


def test_latent_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    a = GaussianLatent(torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g) + 0.1)
    b = GaussianLatent(torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g) + 0.1)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(a.mean, a.std), torch.distributions.Normal(b.mean, b.std)
    ).sum(-1)
    torch.testing.assert_close(a.kl_to(b), ref)
    assert torch.allclose(a.kl_to(a), torch.zeros(3), atol=1e-6)


def test_cnp_metrics_are_its_exact_gaussian_likelihood(heldout: FunctionTasks) -> None:
    # given
    model = _untrained("cnp", seed=1)
    tasks = heldout.select(slice(0, 6))
    # when
    m = np_task_metrics(model, tasks, chunk=4)
    # then
    t = [torch.from_numpy(a) for a in tasks]
    with torch.no_grad():
        mean, std = model.predict(t[0], t[1], t[2])
    ref = gaussian_log_prob(t[3], mean[0], std[0]).mean(dim=(1, 2)).double().numpy()
    np.testing.assert_allclose(m.log_lik, ref, rtol=1e-5)
    np.testing.assert_allclose(m.joint_log_lik, m.log_lik, rtol=1e-9)  # a cnp factorizes over targets
    np.testing.assert_allclose(m.mse, ((mean[0] - t[3]) ** 2).mean(dim=(1, 2)).double().numpy(), rtol=1e-5)


def test_np_metrics_average_the_likelihood_over_latent_samples(heldout: FunctionTasks) -> None:
    model = _untrained("np", seed=2)
    tasks = heldout.select(slice(0, 5))
    one = np_task_metrics(model, tasks, latent_samples=1, seed=9)
    many = np_task_metrics(model, tasks, latent_samples=16, seed=9)
    again = np_task_metrics(model, tasks, latent_samples=16, seed=9)
    np.testing.assert_array_equal(many.log_lik, again.log_lik)  # seeded
    assert not np.array_equal(one.log_lik, many.log_lik)
    with pytest.raises(ValueError, match="needs eps"):
        model.predict(*(torch.from_numpy(a) for a in tasks[:3]))


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"algorithm": "cnp", "lr": 0}, "lr", "must be > 0 and <= 10, got 0.0"),
        ({"algorithm": "cnp", "steps": 0}, "steps", "must be between 1 and 200000, got 0"),
        (
            {"algorithm": "np", "task": {"k_context_min": 9, "k_context_max": 4}},
            "task.k_context_min",
            "must be <= task.k_context_max (4), got 9",
        ),
        (
            {"algorithm": "np", "task": {"k_context_min": 0}},
            "task.k_context_min",
            "must be between 1 and 100000, got 0",
        ),
        ({"algorithm": "np", "task": {"n_way": 5}}, "task.n_way", "unknown setting 'n_way'"),
        (
            {"algorithm": "cnp", "model": {"min_std": 1.5}},
            "model.min_std",
            "must be > 0 and <= 0.999, got 1.5",
        ),
        ({"algorithm": "cnp", "model": {"kind": "np"}}, "model.kind", "unknown setting 'kind'"),
        ({"algorithm": "cnp", "device": "tpu"}, "device", "got 'tpu'"),
        ({"algorithm": "cnp", "learning_rate": 1e-3}, "learning_rate", "unknown setting"),
    ],
)
def test_bad_configs_name_the_field_and_the_value(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(config, GP)
    assert err.value.field == field
    assert message in str(err.value)


def test_a_neural_process_refuses_image_data() -> None:
    images = ImageArrays(np.zeros((2, 28, 28), np.uint8), np.array([0, 1]), ("a", "b"), ("", ""))
    with pytest.raises(ConfigError, match="needs FunctionFamily data, got ImageArrays"):
        train({"algorithm": "cnp", "domain": "function", "steps": 1}, images)


def test_model_config_errors_are_explicit() -> None:
    with pytest.raises(ValueError, match="kind must be 'cnp' or 'np', got 'gp'"):
        NPConfig(kind="gp")
    with pytest.raises(ValueError, match=r"unknown neural process settings \['width'\]"):
        NPConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="hidden must be a positive integer, got 0"):
        NPConfig(hidden=0)
