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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from learning.engine.algorithms import register_algorithm
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
    check_functional_safe,
    maml_train_step,
    model_params,
)
from learning.engine.functions import FunctionFamily, heldout_tasks, step_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult, run_training
from learning.engine.nets import build_model
from learning.engine.regression_eval import adapted_mse, tasks_to_tensors

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
