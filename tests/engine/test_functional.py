"""The batched (vmap) MAML meta-gradient equals a plain per-task autograd loop, to 1e-10 in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from learning.engine.functional import (
    FunctionalSafetyError,
    InnerLoop,
    TaskBatch,
    batched_adapt_predict,
    batched_meta_gradient,
    check_functional_safe,
    per_task_meta_gradient,
)
from learning.engine.nets import MLP, Conv4


def _image_tasks(n_tasks: int, n_way: int, shots: int, queries: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(n_tasks, n_way * shots, 1, 28, 28, generator=g, dtype=torch.float64)
    xq = torch.rand(n_tasks, n_way * queries, 1, 28, 28, generator=g, dtype=torch.float64)
    ys = torch.arange(n_way).repeat_interleave(shots).expand(n_tasks, -1)
    yq = torch.arange(n_way).repeat_interleave(queries).expand(n_tasks, -1)
    return TaskBatch(xs, ys, xq, yq)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_conv4_meta_gradient_matches_the_per_task_loop(first_order, inner_steps):
    # given a float64 Conv4 (batch-statistics norm) and 5 tasks of 5-way 1-shot
    torch.manual_seed(0)
    model = Conv4(hidden=8, out_features=5).double()
    tasks = _image_tasks(5, 5, 1, 2, seed=1)
    inner = InnerLoop(F.cross_entropy, 0.4, inner_steps, first_order=first_order)
    # when the meta-gradient is computed batched (two chunks) and task by task
    batched, loss_b, out = batched_meta_gradient(model, tasks, inner, chunk=3)
    looped, loss_l = per_task_meta_gradient(model, tasks, inner)
    # then they agree to 1e-10 and are far from zero
    assert _max_diff(batched, looped) <= 1e-10
    assert abs(loss_b - loss_l) <= 1e-12
    assert max(float(g.abs().max()) for g in batched.values()) > 1e-3
    assert out.shape == (5, 10, 5)


def test_mlp_regression_meta_gradient_matches_the_loop_and_differs_between_orders():
    # given the 1-40-40-1 MLP and 8 sinusoid-like regression tasks with MSE loss
    torch.manual_seed(0)
    model = MLP().double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(8, 20, 1, generator=g, dtype=torch.float64) * 10 - 5
    amp = torch.rand(8, 1, 1, generator=g, dtype=torch.float64) * 4.9 + 0.1
    y = amp * torch.sin(x)
    tasks = TaskBatch(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:])
    grads = {}
    for first_order in (False, True):
        inner = InnerLoop(F.mse_loss, 0.01, 3, first_order=first_order)
        # when
        batched, _, _ = batched_meta_gradient(model, tasks, inner)
        looped, _ = per_task_meta_gradient(model, tasks, inner)
        # then
        assert _max_diff(batched, looped) <= 1e-10
        grads[first_order] = batched
    # and second order really differs from first order (the flag is not ignored)
    assert _max_diff(grads[False], grads[True]) > 1e-6


def test_adapted_predictions_match_a_manual_sgd_step():
    # given a model and one task
    torch.manual_seed(0)
    model = MLP(hidden=(8,)).double()
    xs, ys, xq = (torch.randn(1, n, 1, dtype=torch.float64) for n in (4, 4, 3))
    # when adapted in batch with one step, and by hand
    batched = batched_adapt_predict(model, xs, ys, xq, InnerLoop(F.mse_loss, 0.1, 1))
    loss = F.mse_loss(model(xs[0]), ys[0])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with torch.no_grad():
        for p, gr in zip(model.parameters(), grads, strict=True):
            p -= 0.1 * gr
        manual = model(xq[0])
    # then
    assert torch.allclose(batched[0], manual, atol=1e-12)


def test_torch_batchnorm_and_shared_modules_are_refused():
    # given nets with the two known functional_call/vmap traps
    with_bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    shared = nn.Linear(3, 3)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    # when checked / then refused with the reason
    with pytest.raises(FunctionalSafetyError, match="functorch#534"):
        check_functional_safe(with_bn)
    with pytest.raises(FunctionalSafetyError, match="registered twice"):
        check_functional_safe(twice)
    check_functional_safe(Conv4(hidden=4, out_features=2))
