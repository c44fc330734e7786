"""Function regression beyond neural processes: MAML-family training on function families, and evaluation.

Training (registered for ``config["domain"] == "function"``, data a
:class:`~learning.engine.functions.FunctionFamily`, model the 1-40-40-1 ReLU MLP with an
MSE loss, as in Finn et al., 2017, section 5.1):

- ``maml`` / ``fomaml``: through :func:`learning.engine.functional.maml_train_step`;
- ``reptile`` (Nichol et al., 2018): ``inner_steps`` SGD steps per task on all its points
  (batched with the same functional core), then ``theta += eps_t * mean(phi - theta)`` with
  ``eps_t = outer_lr * (1 - t / steps)``, as :mod:`learning.engine.algorithms.reptile` does;
- ``pretrain``: the MAML paper's baseline, one network regressed on the pooled points of
  all tasks (it learns the mean function), later fine-tuned exactly like MAML.

Each step draws its tasks from ``step_rng(seed, "train", step)``, so training resumes
bitwise on CPU through :func:`learning.engine.loop.run_training`.

Evaluation, always on identical held-out tasks (the ``test`` stream) for every model:

- :func:`evaluate_adapted`: MSE after 1 and after 10 SGD steps on the context, for a
  MAML-family or pretrained net;
- :func:`evaluate_neural_process`: MSE and Gaussian log-likelihood per target point;
- :func:`evaluate_gp_oracle`: the exact GP posterior on ``gp-1d`` (the Bayes-optimal ceiling).

Scores are means over tasks with a normal 95% confidence interval
(``1.96 * sd / sqrt(n)``); :func:`paired_difference` compares two models task by task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from learning.engine.algorithms import register_algorithm
from learning.engine.algorithms.neural_process import NeuralProcess, np_task_metrics
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import (
    ConfigError,
    get_choice,
    get_float,
    get_int,
    get_section,
    reject_unknown,
)
from learning.engine.device import DEVICE_CHOICES, resolve_device
from learning.engine.functional import (
    TaskBatch,
    adapt,
    batched_adapt_predict,
    check_functional_safe,
    maml_train_step,
    model_params,
)
from learning.engine.functions import FunctionFamily, FunctionTasks, heldout_tasks, step_rng
from learning.engine.gp import gp_predict, predictive_log_likelihood
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult, run_training
from learning.engine.nets import build_model

MIN_EVAL_TASKS = 600
"""The literature's floor for a reported few-shot score (and what the benchmarks use)."""

# ----------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Score:
    """A mean over tasks with the half-width of its normal 95% confidence interval."""

    mean: float
    ci95: float
    n_tasks: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f}"

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci95": self.ci95, "n_tasks": float(self.n_tasks)}


def mean_ci95(values: np.ndarray | Sequence[float]) -> Score:
    """Mean of per-task ``values`` and ``1.96 * sample sd / sqrt(n)``; ci95 is nan for one task.

    Raises ``ValueError`` for an empty input or a non-finite value.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("no per-task values to summarize")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{int((~np.isfinite(arr)).sum())} of {arr.size} per-task values are not finite")
    ci = 1.96 * float(arr.std(ddof=1)) / math.sqrt(arr.size) if arr.size > 1 else math.nan
    return Score(float(arr.mean()), ci, int(arr.size))


def paired_difference(a: np.ndarray, b: np.ndarray) -> Score:
    """``mean(a - b)`` over the same tasks with its 95% CI: a paired comparison of two models."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same tasks, got shapes {a.shape} and {b.shape}")
    return mean_ci95(a - b)


@dataclass
class RegressionReport:
    """Scores of one model on a set of held-out tasks.

    ``per_task`` maps a metric name to its ``(n_tasks,)`` float64 values; ``scores`` holds
    their :class:`Score`. Metric names: ``mse`` (y units squared), ``log_lik`` and
    ``joint_log_lik`` (nats per target point), ``mse_after_<n>`` (after ``n`` SGD steps).
    """

    model: str
    per_task: dict[str, np.ndarray]
    scores: dict[str, Score] = field(init=False)

    def __post_init__(self) -> None:
        self.scores = {k: mean_ci95(v) for k, v in self.per_task.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"model": ..., "scores": {metric: {"mean", "ci95", "n_tasks"}}}``."""
        return {"model": self.model, "scores": {k: s.to_dict() for k, s in self.scores.items()}}


# ----------------------------------------------------------------------------------------
# Evaluation


def tasks_to_tensors(tasks: FunctionTasks, device: torch.device | str = "cpu") -> TaskBatch:
    """``tasks`` as a float32 :class:`TaskBatch` on ``device`` (support = context, query = targets)."""
    return TaskBatch(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in tasks))


def adapted_mse(
    model: nn.Module,
    tasks: FunctionTasks,
    *,
    inner_lr: float,
    steps: Sequence[int] = (1, 10),
    chunk: int = 200,
) -> dict[int, np.ndarray]:
    """Per-task target MSE after ``n`` SGD steps of ``inner_lr`` on the context MSE, each ``n`` in ``steps``.

    ``0`` in ``steps`` scores the unadapted net. Returns ``{n: (n_tasks,) float64}``, y units squared.
    """
    if any(n < 0 for n in steps):
        raise ValueError(f"step counts must be >= 0, got {list(steps)}")
    device = next(model.parameters()).device
    out: dict[int, list[np.ndarray]] = {n: [] for n in steps}
    for start in range(0, tasks.batch, chunk):
        part = tasks_to_tensors(tasks.select(slice(start, start + chunk)), device)
        for n in steps:
            if n == 0:
                with torch.no_grad():
                    pred = model(part.x_query)
            else:
                pred = batched_adapt_predict(
                    model,
                    part.x_support,
                    part.y_support,
                    part.x_query,
                    loss_fn=F.mse_loss,
                    inner_lr=inner_lr,
                    inner_steps=n,
                )
            err = ((pred.double() - part.y_query.double()) ** 2).mean(dim=(1, 2))
            out[n].append(err.cpu().numpy())
    return {n: np.concatenate(v) for n, v in out.items()}


def evaluate_adapted(
    name: str, model: nn.Module, tasks: FunctionTasks, *, inner_lr: float, steps: Sequence[int] = (1, 10)
) -> RegressionReport:
    """``mse_after_<n>`` for each ``n`` in ``steps`` (see :func:`adapted_mse`) as a report named ``name``."""
    per = adapted_mse(model, tasks, inner_lr=inner_lr, steps=steps)
    return RegressionReport(name, {f"mse_after_{n}": v for n, v in per.items()})


def evaluate_neural_process(
    name: str, model: NeuralProcess, tasks: FunctionTasks, *, latent_samples: int = 32, seed: int = 0
) -> RegressionReport:
    """``mse``, ``log_lik`` and ``joint_log_lik`` of a CNP / NP on ``tasks``; see :func:`np_task_metrics`."""
    m = np_task_metrics(model, tasks, latent_samples=latent_samples, seed=seed)
    return RegressionReport(name, {"mse": m.mse, "log_lik": m.log_lik, "joint_log_lik": m.joint_log_lik})


def evaluate_gp_oracle(family: FunctionFamily, tasks: FunctionTasks) -> RegressionReport:
    """The exact GP posterior's ``mse`` (of its mean), ``log_lik`` and ``joint_log_lik`` on gp-1d tasks."""
    pred = gp_predict(tasks.x_ctx, tasks.y_ctx, tasks.x_tgt, family.gp_params)
    mse = ((pred.mean - tasks.y_tgt.astype(np.float64)) ** 2).mean(axis=(1, 2))
    return RegressionReport(
        "GP oracle",
        {
            "mse": mse,
            "log_lik": predictive_log_likelihood(pred, tasks.y_tgt),
            "joint_log_lik": predictive_log_likelihood(pred, tasks.y_tgt, joint=True),
        },
    )


# ----------------------------------------------------------------------------------------
# Training on function families: MAML, first-order MAML, Reptile and the pretrained baseline

_KEYS = (
    "algorithm",
    "domain",
    "model",
    "task",
    "steps",
    "meta_batch",
    "outer_lr",
    "seed",
    "device",
    "checkpoint_every",
    "inner_lr",
    "inner_steps",
    "task_chunk",
    "eval_inner_lr",
    "eval_inner_steps",
    "validation",
)
_DEFAULTS: dict[str, dict[str, Any]] = {
    # Finn et al. 2017, section 5.1: alpha = 0.01, one inner step, 25 tasks a batch, Adam.
    "maml": {"steps": 10000, "meta_batch": 25, "outer_lr": 1e-3, "inner_lr": 0.01, "inner_steps": 1},
    "fomaml": {"steps": 10000, "meta_batch": 25, "outer_lr": 1e-3, "inner_lr": 0.01, "inner_steps": 1},
    # Nichol et al. 2018: 5 SGD steps of 0.02 (their sine demo), meta step annealed from 1.0 to 0.
    "reptile": {"steps": 10000, "meta_batch": 25, "outer_lr": 1.0, "inner_lr": 0.02, "inner_steps": 5},
    "pretrain": {"steps": 10000, "meta_batch": 25, "outer_lr": 1e-3, "inner_lr": 0.01, "inner_steps": 1},
}
_VALIDATION_DEFAULTS: dict[str, int] = {"tasks": 256}


def validate_function_config(config: dict[str, Any]) -> dict[str, Any]:
    """A complete ``maml`` / ``fomaml`` / ``reptile`` / ``pretrain`` config for a function family.

    Settings (defaults per algorithm in ``_DEFAULTS``): ``model.hidden`` (``[40, 40]``),
    ``task.k_shot`` context points per task (10) and ``task.query`` target points (10),
    ``steps``, ``meta_batch`` tasks per step, ``outer_lr`` (Adam's; for ``reptile`` the
    initial meta step size), ``inner_lr``,
    ``inner_steps`` (``pretrain`` ignores both while training), ``task_chunk`` (tasks per
    vmap call, 0 = all), ``eval_inner_lr`` / ``eval_inner_steps`` (adaptation when the
    model is used; default the training ``inner_lr`` and 10 steps), ``seed``, ``device``,
    ``checkpoint_every`` (1000), ``validation.tasks`` (256 ``val``-stream tasks scored at
    the end; 0 = skip). Raises :class:`ConfigError` naming the field.
    """
    reject_unknown(config, _KEYS)
    name = get_choice(config, "algorithm", None, tuple(_DEFAULTS))
    d = _DEFAULTS[name]
    out: dict[str, Any] = {"algorithm": name, "domain": "function"}
    model = get_section(config, "model")
    reject_unknown(model, ("arch", "hidden"), "model")
    get_choice(model, "arch", "mlp", ("mlp",), prefix="model")
    hidden = model.get("hidden", [40, 40])
    if (
        isinstance(hidden, (str, bytes))
        or not isinstance(hidden, Sequence)
        or not hidden
        or any(isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= 4096 for h in hidden)
    ):
        raise ConfigError("model.hidden", f"must be a non-empty list of widths in 1..4096, got {hidden!r}")
    out["model"] = {"arch": "mlp", "hidden": [int(h) for h in hidden]}
    task = get_section(config, "task")
    reject_unknown(task, ("k_shot", "query"), "task")
    out["task"] = {
        "k_shot": get_int(task, "k_shot", 10, minimum=1, maximum=100_000, prefix="task"),
        "query": get_int(task, "query", 10, minimum=1, maximum=100_000, prefix="task"),
    }
    out["steps"] = get_int(config, "steps", d["steps"], minimum=1, maximum=10_000_000)
    out["meta_batch"] = get_int(config, "meta_batch", d["meta_batch"], minimum=1, maximum=4096)
    out["outer_lr"] = get_float(config, "outer_lr", d["outer_lr"], positive=True, maximum=100.0)
    out["inner_lr"] = get_float(config, "inner_lr", d["inner_lr"], positive=True, maximum=100.0)
    out["inner_steps"] = get_int(config, "inner_steps", d["inner_steps"], minimum=1, maximum=1000)
    out["task_chunk"] = get_int(config, "task_chunk", 0, minimum=0)
    out["eval_inner_lr"] = get_float(config, "eval_inner_lr", out["inner_lr"], positive=True, maximum=100.0)
    out["eval_inner_steps"] = get_int(config, "eval_inner_steps", 10, minimum=1, maximum=1000)
    out["seed"] = get_int(config, "seed", 0, minimum=0, maximum=2**63 - 1)
    device = config.get("device", "auto")
    if not isinstance(device, str) or not (device in DEVICE_CHOICES or device.startswith("cuda:")):
        raise ConfigError(
            "device", f"must be one of {list(DEVICE_CHOICES)} or 'cuda:<index>', got {device!r}"
        )
    out["device"] = device
    out["checkpoint_every"] = get_int(config, "checkpoint_every", 1000, minimum=0)
    val = get_section(config, "validation")
    reject_unknown(val, _VALIDATION_DEFAULTS, "validation")
    out["validation"] = {"tasks": get_int(val, "tasks", 256, minimum=0, prefix="validation")}
    return out


def _reptile_step(
    model: nn.Module, tasks: TaskBatch, *, inner_lr: float, inner_steps: int, meta_lr: float
) -> float:
    """One Reptile outer step, ``theta <- theta + meta_lr * mean_i(phi_i - theta)``, in place.

    Each task adapts from ``theta`` with ``inner_steps`` plain SGD steps on its support
    and query points together (Reptile has no separate query loss). Returns the mean
    MSE of the adapted nets on the query points (y units squared).
    """
    params, buffers = model_params(model)
    theta = {k: p.detach() for k, p in params.items()}

    def one(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        fast = adapt(
            model,
            theta,
            buffers,
            torch.cat([xs, xq]),
            torch.cat([ys, yq]),
            loss_fn=F.mse_loss,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            first_order=True,
        )
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
    cfg = validate_function_config(dict(config))
    name = cfg["algorithm"]
    device = resolve_device(cfg["device"])
    adapt_cfg = {"inner_lr": cfg["eval_inner_lr"], "inner_steps": cfg["eval_inner_steps"]}
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
            loss = _reptile_step(
                model, tasks, inner_lr=cfg["inner_lr"], inner_steps=cfg["inner_steps"], meta_lr=meta_lr
            )
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
                model,
                optimizer,
                tasks,
                loss_fn=F.mse_loss,
                inner_lr=cfg["inner_lr"],
                inner_steps=cfg["inner_steps"],
                first_order=name == "fomaml",
                chunk=cfg["task_chunk"],
                should_stop=stop,
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
        algorithm=name,
        config={**cfg, "function_family": data.to_spec()},  # the family joins the resume fingerprint
        model=model,
        model_config=model_config,
        step_fn=step_fn,
        total_steps=cfg["steps"],
        examples_per_step=meta_batch * (k_shot + query),
        optimizer=optimizer,
        checkpoint_every=cfg["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
        finalize=finalize,
    )


for _name in _DEFAULTS:
    register_algorithm(
        _name,
        train_function_learner,
        validate=validate_function_config,
        domain="function",
        data_type=FunctionFamily,
    )
