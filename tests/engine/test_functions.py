"""Function families, their seeded task streams, and the exact GP oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learning.engine.functions import (
    FunctionFamily,
    FunctionSpecError,
    heldout_tasks,
    split_rng,
    step_rng,
)
from learning.engine.gp import RBFParams, gp_log_likelihood, gp_predict, rbf_kernel, sample_gp


def test_sinusoid_tasks_follow_the_maml_paper_ranges() -> None:
    # given
    family = FunctionFamily.from_spec("sinusoid")
    # when
    tasks = family.sample_tasks(split_rng(0, "train"), 400, 10, 20)
    # then
    assert tasks.x_ctx.shape == (400, 10, 1) and tasks.y_tgt.shape == (400, 20, 1)
    assert tasks.x_ctx.dtype == np.float32
    x = np.concatenate([tasks.x_ctx, tasks.x_tgt], axis=1)[..., 0].astype(np.float64)
    y = np.concatenate([tasks.y_ctx, tasks.y_tgt], axis=1)[..., 0].astype(np.float64)
    assert x.min() >= -5.0 and x.max() <= 5.0 and x.min() < -4.9 and x.max() > 4.9
    # Every task is A sin(x - phi): fit (a, b) in a sin x + b cos x exactly, then read A and phi.
    design = np.stack([np.sin(x), np.cos(x)], axis=-1)
    coef = np.stack([np.linalg.lstsq(design[i], y[i], rcond=None)[0] for i in range(len(x))])
    np.testing.assert_allclose(np.einsum("bnk,bk->bn", design, coef), y, atol=1e-5)
    amplitude = np.hypot(coef[:, 0], coef[:, 1])
    phase = np.arctan2(-coef[:, 1], coef[:, 0])
    assert amplitude.min() >= 0.1 - 1e-5 and amplitude.max() <= 5.0 + 1e-5
    assert phase.min() >= -1e-4 and phase.max() <= math.pi + 1e-4
    assert amplitude.max() > 4.5 and phase.max() > 2.8  # the whole range is used


def test_gp_tasks_have_the_prior_covariance() -> None:
    # given: many tasks with the same two inputs, so the empirical covariance is estimable
    family = FunctionFamily.from_spec("gp-1d", {"length_scale": 0.5})
    params = family.gp_params
    x = np.tile(np.array([[[0.0], [0.3]]]), (20000, 1, 1))
    # when
    y = sample_gp(np.random.Generator(np.random.PCG64(1)), x, params)[..., 0]
    # then
    expected = rbf_kernel(x[0], x[0], params) + params.observation_variance * np.eye(2)
    np.testing.assert_allclose(np.cov(y.T), expected, atol=0.04)
    tasks = family.sample_tasks(split_rng(3, "test"), 50, 5, 7)
    assert np.abs(tasks.x_tgt).max() <= 2.0


def test_same_seed_gives_identical_tasks_and_splits_differ() -> None:
    # given
    family = FunctionFamily.from_spec("gp-1d")
    # when
    a = heldout_tasks(family, seed=7, n_tasks=8, k_context=5, n_target=9)
    b = heldout_tasks(family, seed=7, n_tasks=8, k_context=5, n_target=9)
    train = family.sample_tasks(split_rng(7, "train"), 8, 5, 9)
    other_seed = heldout_tasks(family, seed=8, n_tasks=8, k_context=5, n_target=9)
    # then
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u, v)
    assert not np.array_equal(a.x_ctx, train.x_ctx)
    assert not np.array_equal(a.x_ctx, other_seed.x_ctx)


def test_step_streams_are_pure_functions_of_seed_split_and_step() -> None:
    # given
    family = FunctionFamily.from_spec("sinusoid")
    # when
    first = family.sample_tasks(step_rng(1, "train", 5), 4, 3, 3)
    again = family.sample_tasks(step_rng(1, "train", 5), 4, 3, 3)
    next_step = family.sample_tasks(step_rng(1, "train", 6), 4, 3, 3)
    test_step = family.sample_tasks(step_rng(1, "test", 5), 4, 3, 3)
    # then
    assert np.array_equal(first.y_tgt, again.y_tgt)
    assert not np.array_equal(first.y_tgt, next_step.y_tgt)
    assert not np.array_equal(first.y_tgt, test_step.y_tgt)


def test_first_draws_are_pinned_so_other_machines_can_check_them() -> None:
    # given: the first sinusoid task of seed 0's test stream, recorded once
    family = FunctionFamily.from_spec("sinusoid")
    # when
    tasks = family.sample_tasks(split_rng(0, "test"), 1, 1, 1)
    raw = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0, spawn_key=(2,)))).uniform(-5, 5, 2)
    # then: the sampler uses exactly the documented SeedSequence spawn key and draw order
    np.testing.assert_array_equal(tasks.x_ctx[0, 0, 0], np.float32(raw[0]))
    np.testing.assert_array_equal(tasks.x_tgt[0, 0, 0], np.float32(raw[1]))
    # and the values themselves, as first recorded (numpy's PCG64 streams are stable across versions)
    assert [float(a[0, 0, 0]) for a in tasks] == [
        3.382711410522461,
        2.8842356204986572,
        -4.162755489349365,
        -0.2735137343406677,
    ]
    gp = FunctionFamily.from_spec("gp-1d").sample_tasks(split_rng(0, "test"), 1, 2, 1)
    np.testing.assert_allclose(
        np.concatenate([gp.y_ctx.ravel(), gp.y_tgt.ravel()]),
        [0.9562500715255737, -1.9025723934173584, 1.0283809900283813],
        rtol=1e-6,  # through a Cholesky factor: BLAS builds may differ in the last bits
    )


def test_spec_round_trip_records_every_parameter() -> None:
    family = FunctionFamily.from_spec("gp-1d", {"noise_std": 0.05})
    spec = family.to_spec()
    assert spec == {
        "name": "gp-1d",
        "params": {
            "length_scale": 0.4,
            "signal_variance": 1.0,
            "noise_std": 0.05,
            "x_min": -2.0,
            "x_max": 2.0,
        },
    }
    assert FunctionFamily.from_dict(spec) == family


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("cosine", {}, "unknown function family 'cosine'"),
        ("sinusoid", {"amplitude": 1.0}, "unknown ['amplitude']"),
        ("sinusoid", {"amplitude_min": 6.0}, "got 6.0 and 5.0"),
        ("sinusoid", {"amplitude_min": -1.0}, "got -1.0 and 5.0"),
        ("sinusoid", {"phase_min": 4.0}, "phase_min (4.0) exceeds phase_max (3.14159"),
        ("sinusoid", {"x_min": 5.0}, "x_min (5.0) must be below x_max (5.0)"),
        ("gp-1d", {"length_scale": 0.0}, "length_scale must be positive, got 0.0"),
        ("gp-1d", {"signal_variance": -2.0}, "signal_variance must be positive, got -2.0"),
        ("gp-1d", {"noise_std": -0.1}, "noise_std must be non-negative, got -0.1"),
        ("gp-1d", {"noise_std": float("nan")}, "noise_std must be finite, got nan"),
        ("gp-1d", {"noise_std": "0.1"}, "noise_std must be a number, got '0.1'"),
    ],
)
def test_bad_families_are_refused_with_the_numbers(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(FunctionSpecError) as err:
        FunctionFamily.from_spec(name, params)
    assert message in str(err.value)


def test_a_family_missing_a_parameter_names_it() -> None:
    with pytest.raises(FunctionSpecError, match=r"missing \['x_max'\]"):
        FunctionFamily(
            "sinusoid", {k: v for k, v in FunctionFamily.from_spec("sinusoid").params.items() if k != "x_max"}
        )


@pytest.mark.parametrize(
    ("batch", "k", "t", "message"),
    [
        (4, 0, 5, "k_context must be at least 1, got 0"),
        (4, -3, 5, "k_context must be at least 1, got -3"),
        (4, 5, 0, "n_target must be at least 1, got 0"),
        (0, 5, 5, "batch must be at least 1, got 0"),
        (4, 2.5, 5, "k_context must be an integer, got 2.5"),
    ],
)
def test_impossible_sampling_requests_are_refused(batch: int, k: object, t: int, message: str) -> None:
    family = FunctionFamily.from_spec("sinusoid")
    with pytest.raises(FunctionSpecError) as err:
        family.sample_tasks(split_rng(0, "train"), batch, k, t)
    assert message in str(err.value)


def test_bad_rng_seed_and_split_are_refused() -> None:
    family = FunctionFamily.from_spec("sinusoid")
    with pytest.raises(FunctionSpecError, match="numpy Generator, got RandomState"):
        family.sample_tasks(np.random.RandomState(0), 1, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(FunctionSpecError, match="unknown task split 'valid'"):
        split_rng(0, "valid")
    with pytest.raises(FunctionSpecError, match="seed must be a non-negative integer, got -1"):
        split_rng(-1, "train")
    with pytest.raises(FunctionSpecError, match="step must be a non-negative integer, got -2"):
        step_rng(0, "train", -2)
    with pytest.raises(FunctionSpecError, match="sinusoid is not a Gaussian-process family"):
        _ = family.gp_params


def test_gp_oracle_matches_the_two_point_closed_form() -> None:
    # given: one context point (0, 0.5) and one target (1, -0.2); l = 1, signal variance 2, noise std 0.5
    params = RBFParams(length_scale=1.0, signal_variance=2.0, noise_std=0.5)
    x_ctx, y_ctx = np.array([[[0.0]]]), np.array([[[0.5]]])
    x_tgt, y_tgt = np.array([[[1.0]]]), np.array([[[-0.2]]])
    # when
    ll = gp_log_likelihood(x_ctx, y_ctx, x_tgt, y_tgt, params)
    joint = gp_log_likelihood(x_ctx, y_ctx, x_tgt, y_tgt, params, joint=True)
    pred = gp_predict(x_ctx, y_ctx, x_tgt, params)
    # then, by hand: k = 2 e^{-1/2}; s = 0.25; mean = k * 0.5 / 2.25; var = 2.25 - k^2 / 2.25
    k = 2.0 * math.exp(-0.5)
    mean = k * 0.5 / 2.25
    var = 2.25 - k**2 / 2.25
    expected = -0.5 * math.log(2 * math.pi * var) - (-0.2 - mean) ** 2 / (2 * var)
    assert mean == pytest.approx(0.269569, abs=1e-6)  # = e^{-1/2} / 2.25
    assert var == pytest.approx(1.595992, abs=1e-6)
    # the oracle adds JITTER (1e-8 x signal variance) to the noise variance: a 1e-8 relative change
    assert pred.mean[0, 0, 0] == pytest.approx(mean, rel=1e-7)
    assert pred.std[0, 0, 0] ** 2 == pytest.approx(var, rel=1e-7)
    assert ll[0] == pytest.approx(expected, rel=1e-7)
    assert expected == pytest.approx(-1.221764, abs=1e-6)
    assert joint[0] == pytest.approx(expected, rel=1e-7)  # one target: joint == marginal


def test_gp_joint_likelihood_is_the_multivariate_density() -> None:
    # given
    from scipy.stats import multivariate_normal

    family = FunctionFamily.from_spec("gp-1d")
    tasks = heldout_tasks(family, seed=0, n_tasks=3, k_context=4, n_target=6)
    # when
    joint = gp_log_likelihood(*tasks, family.gp_params, joint=True)
    pred = gp_predict(tasks.x_ctx, tasks.y_ctx, tasks.x_tgt, family.gp_params)
    # then
    for b in range(3):
        ref = multivariate_normal(pred.mean[b, :, 0], pred.cov[b]).logpdf(tasks.y_tgt[b, :, 0]) / 6
        assert joint[b] == pytest.approx(ref, rel=1e-9)
