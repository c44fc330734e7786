"""MAML-family training on function families (registered for ``config["domain"] == "function"``).

Data is a :class:`~learning.engine.functions.FunctionFamily`; the model is the
1-40-40-1 ReLU MLP with an MSE loss, as in Finn et al., 2017, section 5.1:

- ``maml`` / ``fomaml``: through :func:`learning.engine.functional.maml_train_step`;
- ``reptile`` (Nichol et al., 2018): ``inner_steps`` SGD steps per task on all its points
  (batched with the same functional core), then ``theta += eps_t * mean(phi - theta)`` with
  ``eps_t = outer_lr * (1 - t / steps)``, as :mod:`learning.engine.algorithms.reptile` does;
- ``pretrain``: the MAML paper's baseline, one network regressed on the pooled points of
  all tasks (it learns the mean function), later fine-tuned exactly like MAML.

Each step draws its tasks from ``step_rng(seed, "train", step)``, so training resumes
bitwise on CPU through :func:`learning.engine.loop.run_training`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.settings import (
    CHECKPOINT_EVERY,
    DEVICE,
    EVAL_INNER_LR,
    EVAL_INNER_STEPS,
    INNER_LR,
    INNER_STEPS,
    META_BATCH,
    OUTER_LR,
    SEED,
    STEPS,
    TASK_CHUNK,
)
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.device import resolve_device
from learning.engine.functional import (
    InnerLoop,
    TaskBatch,
    adapt,
    check_functional_safe,
    maml_train_step,
    model_params,
)
from learning.engine.functions import FunctionFamily, heldout_tasks, step_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.model_configs import MLP_HIDDEN
from learning.engine.nets import build_model
from learning.engine.params import param, section
from learning.engine.regression_eval import adapted_mse, tasks_to_tensors


@dataclass(frozen=True)
class MLPSection:
    """The regression MLP."""

    arch: str = param("mlp", choices=("mlp",), help="network")
    hidden: tuple[int, ...] = MLP_HIDDEN.field((40, 40))


@dataclass(frozen=True)
class FunctionTaskSection:
    """Each training task: ``k_shot`` context points and ``query`` target points."""

    k_shot: int = param(10, minimum=1, maximum=100_000, help="context points per task")
    query: int = param(10, minimum=1, maximum=100_000, help="target points per task")


@dataclass(frozen=True)
class FunctionValidationSection:
    tasks: int = param(256, minimum=0, maximum=100_000, help="val-stream tasks scored at the end; 0 skips")


@dataclass(frozen=True)
class FunctionMAMLConfig:
    """MAML-family learners on functions; defaults of Finn et al. 2017, section 5.1.

    That is alpha 0.01, one inner step, 25 tasks a batch, Adam.
    """

    algorithm: str = param("maml", help="the algorithm")
    domain: str = param("function", choices=("function",))
    model: MLPSection = section(MLPSection, "the network")
    task: FunctionTaskSection = section(FunctionTaskSection, "the training tasks")
    steps: int = STEPS.field(10000)
    meta_batch: int = META_BATCH.field(25)
    outer_lr: float = OUTER_LR.field(1e-3)
    inner_lr: float = INNER_LR.field(0.01)
    inner_steps: int = INNER_STEPS.field(1)
    task_chunk: int = TASK_CHUNK.field(0)
    eval_inner_lr: float = EVAL_INNER_LR.field(0.01, default_from="inner_lr")
    eval_inner_steps: int = EVAL_INNER_STEPS.field(10)
    seed: int = SEED.field(0)
    device: str = DEVICE.field("auto")
    checkpoint_every: int = CHECKPOINT_EVERY.field(1000)
    validation: FunctionValidationSection = section(FunctionValidationSection, "end-of-training validation")


@dataclass(frozen=True)
class FunctionReptileConfig(FunctionMAMLConfig):
    """Reptile (Nichol et al. 2018: 5 SGD steps of 0.02, meta step annealed from 1.0 to 0) on functions."""

    outer_lr: float = OUTER_LR.field(1.0)
    inner_lr: float = INNER_LR.field(0.02)
    inner_steps: int = INNER_STEPS.field(5)


def _reptile_step(model: nn.Module, tasks: TaskBatch, inner: InnerLoop, *, meta_lr: float) -> float:
    """One Reptile outer step, ``theta <- theta + meta_lr * mean_i(phi_i - theta)``, in place.

    Each task adapts from ``theta`` with ``inner.steps`` plain SGD steps on its support
    and query points together (Reptile has no separate query loss). Returns the mean
    MSE of the adapted nets on the query points (y units squared).
    """
    params, buffers = model_params(model)
    theta = {k: p.detach() for k, p in params.items()}

    def one(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        fast = adapt(model, theta, buffers, torch.cat([xs, xq]), torch.cat([ys, yq]), inner)
        return fast, F.mse_loss(functional_call(model, (fast, buffers), (xq,)), yq)

    with torch.no_grad():
        fast, losses = vmap(one)(*tasks)
        for name, p in params.items():
            p.add_(fast[name].mean(dim=0) - theta[name], alpha=meta_lr)
    return float(losses.mean())


def train_function_learner(
    config: Mapping[str, Any],
    data: FunctionFamily,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Train ``config["algorithm"]`` (maml, fomaml, reptile, pretrain) on tasks from ``data``.

    Returns a :class:`TrainResult` whose ``model_config`` is the MLP's plus ``adapt``
    (``inner_lr``, ``inner_steps`` used at evaluation). ``metrics`` holds the last
    window's ``loss`` (query MSE after adaptation; pooled MSE for ``pretrain``) and
    ``val_mse_after_1`` / ``val_mse_after_<eval_inner_steps>`` on the ``val`` stream.
    """
    if not isinstance(data, FunctionFamily):
        raise ConfigError(
            "domain", f"{config.get('algorithm')} needs a FunctionFamily, got {type(data).__name__}"
        )
    cfg = config
    name = cfg["algorithm"]
    device = resolve_device(cfg["device"])
    adapt_cfg = {"inner_lr": cfg["eval_inner_lr"], "inner_steps": cfg["eval_inner_steps"]}
    # Reptile's inner steps are plain SGD (first order) on all of a task's points.
    first_order = name in ("fomaml", "reptile")
    inner = InnerLoop(F.mse_loss, cfg["inner_lr"], cfg["inner_steps"], first_order=first_order)
    model_config = {
        "arch": "mlp",
        "in_features": 1,
        "hidden": cfg["model"]["hidden"],
        "out_features": 1,
        "adapt": adapt_cfg,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        model = build_model(model_config)
    model.to(device)
    check_functional_safe(model)
    # Reptile moves theta itself; the others use Adam on a gradient.
    optimizer = None if name == "reptile" else torch.optim.Adam(model.parameters(), lr=cfg["outer_lr"])
    seed, meta_batch = cfg["seed"], cfg["meta_batch"]
    k_shot, query = cfg["task"]["k_shot"], cfg["task"]["query"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        batch = data.sample_tasks(step_rng(seed, "train", step), meta_batch, k_shot, query)
        tasks = tasks_to_tensors(batch, device)
        if name == "reptile":
            # The paper's linearly annealed meta step size, as in the image Reptile.
            meta_lr = cfg["outer_lr"] * (1.0 - step / cfg["steps"])
            loss = _reptile_step(model, tasks, inner, meta_lr=meta_lr)
            return StepOutput(loss=loss, metrics={"meta_step_size": meta_lr})
        assert optimizer is not None
        if name == "pretrain":
            x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
            y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
            loss_t = F.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss_t.backward()
            optimizer.step()
            loss = loss_t.item()
        else:
            loss, _ = maml_train_step(
                model, optimizer, tasks, inner, chunk=cfg["task_chunk"], should_stop=stop
            )
        return StepOutput(loss=loss)

    def finalize() -> dict[str, float]:
        n_val = cfg["validation"]["tasks"]
        if n_val == 0:
            return {}
        tasks = heldout_tasks(data, seed=seed, n_tasks=n_val, k_context=k_shot, n_target=query, split="val")
        steps = sorted({1, cfg["eval_inner_steps"]})
        per = adapted_mse(model, tasks, inner_lr=cfg["eval_inner_lr"], steps=steps)
        return {f"val_mse_after_{n}": float(v.mean()) for n, v in per.items()}

    return run_training(
        Trainable(
            algorithm=name,
            config={**cfg, "function_family": data.to_spec()},
            model=model,
            model_config=model_config,
            step_fn=step_fn,
            total_steps=cfg["steps"],
            examples_per_step=meta_batch * (k_shot + query),
            optimizer=optimizer,
            finalize=finalize,
        ),
        checkpoint_every=cfg["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


_VARIANTS: dict[str, tuple[type, str, str]] = {
    "maml": (FunctionMAMLConfig, "MAML (functions)", "meta_train"),
    "fomaml": (FunctionMAMLConfig, "First-order MAML (functions)", "meta_train"),
    "reptile": (FunctionReptileConfig, "Reptile (functions)", "meta_train"),
    "pretrain": (FunctionMAMLConfig, "Pretrained regressor (functions)", "baseline"),
}
for _name, (_config, _label, _kind) in _VARIANTS.items():
    register_algorithm(
        _name,
        train_function_learner,
        config=_config,
        label=_label,
        kind=_kind,
        domain="function",
        data_type=FunctionFamily,
        # The site launches the learners; the pretrained regressor is their baseline only.
        offered=_kind == "meta_train",
        model={"arch": "mlp"},
        adapts=True,
    )
