"""The MAML core on torch.func: inner-loop adaptation batched over tasks with ``vmap``.

Works for any ``nn.Module`` and any loss ``loss_fn(outputs, targets) -> scalar``
(cross-entropy for classification, MSE for the regression MLP). A *task batch* is
four tensors with a leading task dimension ``B``::

    x_support (B, S, *in), y_support (B, S, *tgt), x_query (B, Q, *in), y_query (B, Q, *tgt)

For one task, the inner loop (:class:`InnerLoop`) takes ``steps`` plain gradient steps of
size ``lr`` on the support loss, starting from the shared parameters ``theta``; the
meta-loss is the query loss at the adapted parameters, averaged over the ``B`` tasks.
Second-order MAML differentiates through the inner gradients; first-order MAML
(``first_order=True``) treats them as constants (Finn et al., 2017, section 5.2).

``vmap`` runs every task of a chunk in one batched call; ``torch.func.grad`` inside it
computes per-task inner gradients that the outer ``torch.autograd.grad`` differentiates.
:func:`per_task_meta_gradient` is the plain per-task autograd loop (learn2learn style),
kept as the reference the tests and the throughput benchmark compare against.

Two traps, both checked by :func:`check_functional_safe`: ``nn.BatchNorm*`` under
vmap gives wrong second-order gradients (use :class:`learning.engine.conv4.BatchStatNorm`),
and ``functional_call`` mishandles a module or parameter registered under two names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from learning.engine.loop import StepInterrupted
from learning.engine.nets import embed_episode, is_transductive

LossFn = Callable[[Tensor, Tensor], Tensor]
Params = dict[str, Tensor]


class TaskBatch(NamedTuple):
    """``B`` tasks stacked on dim 0; see the module docstring for shapes."""

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.x_support.shape[0])

    def slice(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start:stop`` as a new batch (views, no copy)."""
        return TaskBatch(*(t[start:stop] for t in self))


@dataclass(frozen=True)
class InnerLoop:
    """How one task adapts: ``steps`` SGD steps of size ``lr`` on ``loss_fn(outputs, targets)``.

    ``first_order`` treats the inner gradients as constants (first-order MAML; evaluation).
    """

    loss_fn: LossFn
    lr: float
    steps: int
    first_order: bool = False


class FunctionalSafetyError(ValueError):
    """The model cannot be used with functional_call + vmap without wrong results."""


class AdaptationStopped(Exception):
    """``should_stop()`` returned True between two inner steps; the adaptation was abandoned."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"adaptation stopped after {done} of {total} inner steps")
        self.done = done
        self.total = total


def check_functional_safe(model: nn.Module) -> None:
    """Raise :class:`FunctionalSafetyError` if ``model`` has ``nn.BatchNorm*`` or a shared module/parameter.

    Returns None when the model is safe for :func:`batched_meta_gradient`.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise FunctionalSafetyError(
                f"module {name!r} is {type(module).__name__}: vmap over torch BatchNorm gives wrong "
                "second-order gradients (pytorch/functorch#534); use learning.engine.conv4.BatchStatNorm"
            )
    all_modules = list(model.named_modules(remove_duplicate=False))
    unique_modules = list(model.named_modules())
    if len(all_modules) != len(unique_modules):
        seen: dict[int, str] = {}
        for name, module in all_modules:
            if id(module) in seen:
                raise FunctionalSafetyError(
                    f"module registered twice ({seen[id(module)]!r} and {name!r}); functional_call "
                    "would substitute only one of the names"
                )
            seen[id(module)] = name
    all_params = list(model.named_parameters(remove_duplicate=False))
    if len(all_params) != len(dict(model.named_parameters())):
        raise FunctionalSafetyError("a parameter is registered under two names (tied weights)")


def model_params(model: nn.Module) -> tuple[Params, Params]:
    """``(parameters, buffers)`` of ``model`` as name -> tensor dicts (the live tensors, not copies)."""
    return dict(model.named_parameters()), dict(model.named_buffers())


def adapt(
    model: nn.Module,
    params: Params,
    buffers: Params,
    x: Tensor,
    y: Tensor,
    inner: InnerLoop,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Params:
    """Adapted parameters of ONE task after ``inner.steps`` SGD steps on ``inner.loss_fn(model(x), y)``.

    Call it inside ``vmap`` for a batch of tasks. The result is differentiable w.r.t.
    ``params`` (through the inner gradients too unless ``inner.first_order``). ``should_stop``
    is polled before every step; when it returns True, :class:`AdaptationStopped` is raised.
    """

    def inner_loss(p: Params) -> Tensor:
        return inner.loss_fn(functional_call(model, (p, buffers), (x,)), y)

    for step in range(inner.steps):
        if should_stop is not None and should_stop():
            raise AdaptationStopped(step, inner.steps)
        grads = grad(inner_loss)(params)
        if inner.first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        params = {k: params[k] - inner.lr * grads[k] for k in params}
    return params


def _task_query_loss(
    model: nn.Module,
    params: Params,
    buffers: Params,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    yq: Tensor,
    inner: InnerLoop,
) -> tuple[Tensor, Tensor]:
    fast = adapt(model, params, buffers, xs, ys, inner)
    out = functional_call(model, (fast, buffers), (xq,))
    return inner.loss_fn(out, yq), out


def batched_query_losses(
    model: nn.Module,
    params: Params,
    buffers: Params,
    tasks: TaskBatch,
    inner: InnerLoop,
) -> tuple[Tensor, Tensor]:
    """Per-task query losses ``(B,)`` and query outputs ``(B, Q, *out)`` after adaptation, in one vmap call.

    Differentiable w.r.t. ``params`` (the MAML meta-gradient is the gradient of their mean).
    """

    def one(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[Tensor, Tensor]:
        return _task_query_loss(model, params, buffers, xs, ys, xq, yq, inner)

    return vmap(one)(*tasks)


def batched_meta_gradient(
    model: nn.Module,
    tasks: TaskBatch,
    inner: InnerLoop,
    *,
    chunk: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Params, float, Tensor]:
    """The MAML meta-gradient of the mean query loss over ``tasks``, computed with vmap.

    Tasks are processed ``chunk`` at a time (0: all in one vmap call) and their gradients
    summed, which bounds memory and lets a stop request be honoured mid-step:
    ``should_stop`` is polled between chunks and, if true, the partial work is dropped and
    :class:`learning.engine.loop.StepInterrupted` is raised.

    Returns ``(grads, mean_loss, query_outputs)``: ``grads`` maps parameter names to
    tensors shaped like the parameters; ``mean_loss`` is a Python float; ``query_outputs``
    is ``(B, Q, *out)``, detached.
    """
    params, buffers = model_params(model)
    n = tasks.num_tasks
    size = chunk if chunk > 0 else n
    total: Params = {k: torch.zeros_like(p) for k, p in params.items()}
    loss_sum = 0.0
    outputs: list[Tensor] = []
    for start in range(0, n, size):
        if start > 0 and should_stop is not None and should_stop():
            raise StepInterrupted()
        part = tasks.slice(start, min(start + size, n))
        losses, out = batched_query_losses(model, params, buffers, part, inner)
        # Dividing by the full batch size here (not the chunk's) makes the sum over chunks
        # the gradient of the mean over all tasks.
        names = list(params)
        grads = torch.autograd.grad(losses.sum() / n, [params[k] for k in names], allow_unused=True)
        for k, g in zip(names, grads, strict=True):
            if g is not None:
                total[k] += g
        loss_sum += float(losses.detach().sum())
        outputs.append(out.detach())
    return total, loss_sum / n, torch.cat(outputs)


def per_task_meta_gradient(
    model: nn.Module,
    tasks: TaskBatch,
    inner: InnerLoop,
) -> tuple[Params, float]:
    """Reference: the same meta-gradient as :func:`batched_meta_gradient` from a plain per-task autograd loop.

    For each task the inner gradients come from ``torch.autograd.grad`` (with
    ``create_graph`` for second order) and the query loss is backpropagated on its own, as
    learn2learn's ``MAML.adapt`` does. Returns ``(grads, mean_loss)``.
    """
    params, buffers = model_params(model)
    names = list(params)
    total: Params = {k: torch.zeros_like(p) for k, p in params.items()}
    loss_sum = 0.0
    n = tasks.num_tasks
    for i in range(n):
        fast = dict(params)
        for _ in range(inner.steps):
            support_loss = inner.loss_fn(
                functional_call(model, (fast, buffers), (tasks.x_support[i],)), tasks.y_support[i]
            )
            grads = torch.autograd.grad(
                support_loss, [fast[k] for k in names], create_graph=not inner.first_order
            )
            fast = {k: fast[k] - inner.lr * g for k, g in zip(names, grads, strict=True)}
        query_loss = inner.loss_fn(
            functional_call(model, (fast, buffers), (tasks.x_query[i],)), tasks.y_query[i]
        )
        meta = torch.autograd.grad(query_loss / n, [params[k] for k in names], allow_unused=True)
        for k, g in zip(names, meta, strict=True):
            if g is not None:
                total[k] += g
        loss_sum += float(query_loss.detach())
    return total, loss_sum / n


def batched_adapt_predict(
    model: nn.Module,
    x_support: Tensor,
    y_support: Tensor,
    x_query: Tensor,
    inner: InnerLoop,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """Query outputs ``(B, Q, *out)`` after adapting to each task's support ``(B, S, ...)``; no graph kept.

    The queries are normalized by the support's statistics (:func:`embed_episode`), so each
    query's output depends on the support and itself only; under
    :func:`learning.engine.nets.transductive_statistics`, by their own batch's, as in training.

    For evaluation: the inner loop runs first-order (no meta-gradient is needed) and
    under ``no_grad`` outside; ``torch.func.grad`` still computes the inner gradients.
    ``should_stop`` is polled before every inner step (all tasks step together under
    ``vmap``); when it returns True, :class:`AdaptationStopped` is raised.
    """
    params, buffers = model_params(model)
    detached = {k: p.detach() for k, p in params.items()}
    first_order = InnerLoop(inner.loss_fn, inner.lr, inner.steps, first_order=True)

    def one(xs: Tensor, ys: Tensor, xq: Tensor) -> Tensor:
        fast = adapt(model, detached, buffers, xs, ys, first_order, should_stop=should_stop)
        if is_transductive():
            return functional_call(model, (fast, buffers), (xq,))
        _, query = embed_episode(lambda x: functional_call(model, (fast, buffers), (x,)), xs, xq)
        return query

    with torch.no_grad():
        return vmap(one)(x_support, y_support, x_query)


def maml_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tasks: TaskBatch,
    inner: InnerLoop,
    *,
    chunk: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[float, Tensor]:
    """One MAML outer step on ``tasks``: meta-gradient (batched), then ``optimizer.step()``.

    The building block for any MAML trainer (images, the regression MLP). Returns
    ``(mean query loss, query outputs (B, Q, *out) detached)``. Raises
    :class:`learning.engine.loop.StepInterrupted` (model untouched) if ``should_stop``
    turns true between chunks.
    """
    grads, loss, outputs = batched_meta_gradient(model, tasks, inner, chunk=chunk, should_stop=should_stop)
    for name, p in model.named_parameters():
        p.grad = grads[name]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, outputs
