"""Held-out regression evaluation: confidence intervals, adaptation, the GP oracle beside a neural process."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from learning.engine.functions import FunctionFamily, FunctionTasks, heldout_tasks
from learning.engine.gp import gp_log_likelihood, gp_predict
from learning.engine.nets import build_model
from learning.engine.neural_process_nets import build_neural_process
from learning.engine.regression_eval import (
    MIN_EVAL_TASKS,
    EvaluationStopped,
    adapted_mse,
    evaluate_adapted,
    evaluate_gp_oracle,
    evaluate_neural_process,
    mean_ci95,
    paired_difference,
)

torch.set_num_threads(1)

GP = FunctionFamily.from_spec("gp-1d")


@pytest.fixture(scope="module")
def gp_tasks() -> FunctionTasks:
    return heldout_tasks(GP, seed=1, n_tasks=MIN_EVAL_TASKS, k_context=10, n_target=30)


def _mlp(seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model({"arch": "mlp", "hidden": [40, 40]})


def test_mean_ci95_is_the_normal_interval_computed_by_hand() -> None:
    # 1, 2, 3, 4: mean 2.5, sample sd sqrt(5/3) = 1.290994, ci = 1.96 * 1.290994 / 2
    score = mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert score.mean == 2.5 and score.n_tasks == 4
    assert score.ci95 == pytest.approx(1.265174, abs=1e-6)
    assert str(score) == "2.5000 ± 1.2652"
    assert math.isnan(mean_ci95([3.0]).ci95)


def test_mean_ci95_refuses_empty_or_non_finite_values() -> None:
    with pytest.raises(ValueError, match="no per-task values"):
        mean_ci95([])
    with pytest.raises(ValueError, match="1 of 3 per-task values are not finite"):
        mean_ci95([1.0, float("nan"), 2.0])


def test_paired_difference_uses_the_task_by_task_differences() -> None:
    a = np.array([1.0, 2.0, 3.0, 5.0])
    b = np.array([0.5, 1.5, 2.5, 4.5])
    diff = paired_difference(a, b)
    assert diff.mean == pytest.approx(0.5) and diff.ci95 == pytest.approx(0.0, abs=1e-12)
    assert mean_ci95(a).ci95 > 1.0  # unpaired, the same comparison would look noisy
    with pytest.raises(ValueError, match=r"same tasks, got shapes \(4,\) and \(3,\)"):
        paired_difference(a, b[:3])


def test_one_adaptation_step_is_plain_sgd_on_the_context_mse() -> None:
    # given
    tasks = heldout_tasks(FunctionFamily.from_spec("sinusoid"), seed=2, n_tasks=3, k_context=5, n_target=7)
    net = _mlp(1)
    # when
    got = adapted_mse(net, tasks, inner_lr=0.05, steps=(0, 1, 2))
    # then: the same by hand, one task at a time, with torch.optim.SGD on a copy
    for b in range(3):
        x_ctx, y_ctx, x_tgt, y_tgt = (torch.from_numpy(a[b]) for a in tasks)
        copy_net = copy.deepcopy(net)
        with torch.no_grad():
            assert got[0][b] == pytest.approx(F.mse_loss(copy_net(x_tgt), y_tgt).item(), rel=1e-5)
        opt = torch.optim.SGD(copy_net.parameters(), lr=0.05)
        for n in (1, 2):
            opt.zero_grad()
            F.mse_loss(copy_net(x_ctx), y_ctx).backward()
            opt.step()
            with torch.no_grad():
                assert got[n][b] == pytest.approx(F.mse_loss(copy_net(x_tgt), y_tgt).item(), rel=1e-4)
    assert not np.allclose(got[0], got[2])
    with pytest.raises(ValueError, match=r"step counts must be >= 0, got \[1, -1\]"):
        adapted_mse(net, tasks, inner_lr=0.05, steps=(1, -1))


def test_evaluate_adapted_reports_each_step_count_with_a_ci() -> None:
    tasks = heldout_tasks(FunctionFamily.from_spec("sinusoid"), seed=0, n_tasks=40, k_context=5, n_target=10)
    report = evaluate_adapted("untrained", _mlp(), tasks, inner_lr=0.01, steps=(1, 10))
    assert set(report.scores) == {"mse_after_1", "mse_after_10"}
    assert report.scores["mse_after_1"].n_tasks == 40 and report.scores["mse_after_1"].ci95 > 0
    json.dumps(report.to_dict())  # a catalog entry can store it


def test_gp_oracle_scores_are_its_exact_posterior(gp_tasks: FunctionTasks) -> None:
    # when
    report = evaluate_gp_oracle(GP, gp_tasks)
    # then
    pred = gp_predict(gp_tasks.x_ctx, gp_tasks.y_ctx, gp_tasks.x_tgt, GP.gp_params)
    np.testing.assert_allclose(report.per_task["mse"], ((pred.mean - gp_tasks.y_tgt) ** 2).mean(axis=(1, 2)))
    np.testing.assert_array_equal(report.per_task["log_lik"], gp_log_likelihood(*gp_tasks, GP.gp_params))
    assert report.scores["log_lik"].n_tasks == MIN_EVAL_TASKS
    # The joint density knows the targets' correlations, so per point it is the higher one.
    assert report.scores["joint_log_lik"].mean > report.scores["log_lik"].mean


def test_gp_oracle_is_calibrated_on_tasks_from_the_sampler(gp_tasks: FunctionTasks) -> None:
    # Standardized residuals of the exact posterior are N(0, 1) when the sampler and the oracle agree.
    pred = gp_predict(gp_tasks.x_ctx, gp_tasks.y_ctx, gp_tasks.x_tgt, GP.gp_params)
    z = ((gp_tasks.y_tgt - pred.mean) / pred.std).ravel()
    assert abs(z.mean()) < 0.03 and abs(z.var() - 1.0) < 0.04
    # A wrong noise level in the oracle would show up at once.
    wrong = gp_predict(gp_tasks.x_ctx, gp_tasks.y_ctx, gp_tasks.x_tgt, GP.gp_params._replace(noise_std=0.2))
    z_wrong = ((gp_tasks.y_tgt - wrong.mean) / wrong.std).ravel()
    assert abs(z_wrong.var() - 1.0) > 0.1


def test_oracle_and_neural_process_are_scored_on_identical_tasks(gp_tasks: FunctionTasks) -> None:
    # given
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnp = build_neural_process({"arch": "neural_process", "kind": "cnp", "hidden": 32})
    # when
    oracle = evaluate_gp_oracle(GP, gp_tasks)
    untrained = evaluate_neural_process("CNP (untrained)", cnp, gp_tasks)
    # then
    diff = paired_difference(oracle.per_task["log_lik"], untrained.per_task["log_lik"])
    assert diff.mean - diff.ci95 > 0.5  # the oracle is the ceiling; an untrained net is far below
    assert set(untrained.scores) == {"mse", "log_lik", "joint_log_lik"}
    assert untrained.scores["mse"].n_tasks == oracle.scores["mse"].n_tasks == MIN_EVAL_TASKS


def _sinusoid_tasks(n_tasks: int = 40) -> FunctionTasks:
    return heldout_tasks(
        FunctionFamily.from_spec("sinusoid"), seed=4, n_tasks=n_tasks, k_context=5, n_target=10
    )


def test_adapted_mse_reports_progress_per_chunk_without_changing_the_scores() -> None:
    # given 40 tasks in chunks of 10, scored without and with an unthrottled progress callback
    tasks = _sinusoid_tasks()
    net = _mlp(2)
    plain = adapted_mse(net, tasks, inner_lr=0.05, steps=(1, 3), chunk=10)
    events: list[dict] = []
    # when
    watched = adapted_mse(
        net,
        tasks,
        inner_lr=0.05,
        steps=(1, 3),
        chunk=10,
        on_progress=events.append,
        should_stop=lambda: False,
        progress_interval_s=0,
    )
    # then one event per chunk up to the total, each with a float ETA, and bitwise the same scores
    assert [e["done"] for e in events] == [10, 20, 30, 40]
    assert all(e["total"] == 40 and isinstance(e["eta_seconds"], float) for e in events)
    assert all(e["eta_seconds"] >= 0 for e in events) and events[-1]["eta_seconds"] == 0.0
    assert all(np.array_equal(plain[n], watched[n]) for n in (1, 3))


def test_evaluate_adapted_with_a_long_interval_reports_only_the_first_and_final_chunks() -> None:
    # given 450 tasks (chunks of 200, 200 and 50) and a one-hour interval
    events: list[dict] = []
    # when
    evaluate_adapted(
        "untrained",
        _mlp(),
        _sinusoid_tasks(450),
        inner_lr=0.01,
        steps=(1,),
        on_progress=events.append,
        progress_interval_s=3600,
    )
    # then
    assert [e["done"] for e in events] == [200, 450]


def test_should_stop_ends_adaptation_between_chunks() -> None:
    # given a stop flag that turns True on its second poll
    polls: list[int] = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) >= 2

    # when / then
    with pytest.raises(EvaluationStopped, match="after 10 of 40 episodes"):
        adapted_mse(_mlp(), _sinusoid_tasks(), inner_lr=0.05, steps=(1,), chunk=10, should_stop=stop)


def test_neural_process_evaluation_reports_a_start_and_a_final_event_and_can_be_stopped(
    gp_tasks: FunctionTasks,
) -> None:
    # given an untrained cnp scored without and with a progress callback
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnp = build_neural_process({"arch": "neural_process", "kind": "cnp", "hidden": 32})
    plain = evaluate_neural_process("cnp", cnp, gp_tasks)
    events: list[dict] = []
    # when
    watched = evaluate_neural_process("cnp", cnp, gp_tasks, on_progress=events.append)
    # then a start event without an ETA, a final one at the total, and the same scores
    assert [(e["done"], e["total"]) for e in events] == [
        (0, MIN_EVAL_TASKS),
        (MIN_EVAL_TASKS, MIN_EVAL_TASKS),
    ]
    assert events[0]["eta_seconds"] is None and events[1]["eta_seconds"] == 0.0
    assert all(np.array_equal(plain.per_task[k], watched.per_task[k]) for k in plain.per_task)
    with pytest.raises(EvaluationStopped, match=f"after 0 of {MIN_EVAL_TASKS} episodes"):
        evaluate_neural_process("cnp", cnp, gp_tasks, should_stop=lambda: True)
