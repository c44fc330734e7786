"""Training of Conditional and latent Neural Processes (Garnelo et al., 2018) on 1-D function families.

The networks (:class:`learning.engine.neural_process_nets.NeuralProcess`) map a context
set ``{(x_i, y_i)}`` and target inputs ``x_t`` to a Gaussian per target point.

- ``cnp``: trained by maximum likelihood on targets that include the context points.
- ``np``: trained on the ELBO with the context part of the targets,
  ``E_{q(z|C+T)}[log p(y_T | x_T, z)] - KL(q(z|C+T) || q(z|C))``, per target point.

The std floor defaults to 0.01 rather than the 0.1 of DeepMind's reference code: the
``gp-1d`` observation noise is 0.02, and a 0.1 floor would cap the log-likelihood a model
can reach near the context points well below the GP oracle's. All training randomness
(context size, tasks, latent noise) comes from ``step_rng(seed, "train", step)``, never
from torch's RNG, so a resumed run repeats the uninterrupted one exactly. The end-of-run
validation scores come from :func:`learning.engine.regression_eval.np_task_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.settings import CHECKPOINT_EVERY, DEVICE, LR, SEED, STEPS
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.device import resolve_device
from learning.engine.functions import FunctionFamily, FunctionTasks, heldout_tasks, step_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.model_configs import NPNetSection
from learning.engine.neural_process_nets import ARCH, build_neural_process
from learning.engine.params import param, section
from learning.engine.regression_eval import np_task_metrics


@dataclass(frozen=True)
class NPTaskSection:
    """Training tasks: ``k_context`` context points uniform in ``[k_context_min, k_context_max]``."""

    batch_tasks: int = param(16, minimum=1, maximum=4096, help="tasks per step")
    k_context_min: int = param(3, minimum=1, maximum=100_000, help="fewest context points")
    k_context_max: int = param(50, minimum=1, maximum=100_000, help="most context points")
    n_target: int = param(50, minimum=1, maximum=100_000, help="extra target points per task")

    def check(self) -> None:
        if self.k_context_min > self.k_context_max:
            raise ConfigError(
                "task.k_context_min",
                f"must be <= task.k_context_max ({self.k_context_max}), got {self.k_context_min}",
            )


@dataclass(frozen=True)
class NPValidationSection:
    """Scored at the end of training on the ``val`` stream."""

    tasks: int = param(256, minimum=0, maximum=100_000, help="0 skips validation")
    k_context: int = param(10, minimum=1, maximum=100_000)
    n_target: int = param(50, minimum=1, maximum=100_000)
    latent_samples: int = param(16, minimum=1, maximum=4096)


@dataclass(frozen=True)
class NeuralProcessConfig:
    """A Conditional Neural Process (``cnp``) or latent Neural Process (``np``) on a function family."""

    algorithm: str = param("cnp", choices=("cnp", "np"))
    domain: str = param("function", choices=("function",))
    seed: int = SEED.field(0)
    steps: int = STEPS.field(20000)
    device: str = DEVICE.field("auto")
    checkpoint_every: int = CHECKPOINT_EVERY.field(1000)
    lr: float = LR.field(5e-4)
    latent_samples: int = param(1, minimum=1, maximum=64, help="np: z samples per task in the ELBO")
    task: NPTaskSection = section(NPTaskSection, "training tasks")
    model: NPNetSection = section(NPNetSection, "the networks")
    validation: NPValidationSection = section(NPValidationSection, "end-of-training validation")


def model_config_for(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able ``model_config`` (``arch`` = ``neural_process``) of a validated config."""
    return {"arch": ARCH, "kind": config["algorithm"], **config["model"]}


def _tensors(tasks: FunctionTasks, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x_ctx, y_ctx, x_tgt, y_tgt = (torch.from_numpy(a).to(device) for a in tasks)
    return x_ctx, y_ctx, x_tgt, y_tgt


def train_neural_process(
    config: Mapping[str, Any],
    data: FunctionFamily,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Train a ``cnp`` or ``np`` (``config["algorithm"]``) on tasks from ``data``; returns the result.

    Step ``n`` draws its batch (context size, tasks, latent noise) from
    ``step_rng(seed, "train", n)`` only, so a resumed run is bitwise the uninterrupted
    one on CPU. ``metrics`` adds ``val_log_lik`` and ``val_mse`` (nats / y^2 per target
    point, on the ``val`` stream) unless ``validation.tasks`` is 0.
    """
    if not isinstance(data, FunctionFamily):
        raise ConfigError(
            "domain", f"{config.get('algorithm')} needs a FunctionFamily, got {type(data).__name__}"
        )
    cfg = config
    device = resolve_device(cfg["device"])
    model_config = model_config_for(cfg)
    # Initialize from the seed without disturbing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        model = build_neural_process(model_config)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    task = cfg["task"]
    seed = cfg["seed"]
    samples = cfg["latent_samples"]

    def step_fn(step: int, _should_stop: StopFn) -> StepOutput:
        rng = step_rng(seed, "train", step)
        k = int(rng.integers(task["k_context_min"], task["k_context_max"] + 1))
        batch = data.sample_tasks(rng, task["batch_tasks"], k, task["n_target"])
        eps = None
        if model.uses_latent:
            eps_np = rng.standard_normal((samples, task["batch_tasks"], model.config.latent_dim))
            eps = torch.from_numpy(eps_np.astype(np.float32)).to(device)
        out = model.training_loss(*_tensors(batch, device), eps)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        metrics = {"log_lik": out.log_lik.item()}
        if model.uses_latent:
            metrics["kl"] = out.kl.item()
        return StepOutput(loss=out.loss.item(), metrics=metrics)

    def finalize() -> dict[str, float]:
        val = cfg["validation"]
        if val["tasks"] == 0:
            return {}
        tasks = heldout_tasks(
            data,
            seed=seed,
            n_tasks=val["tasks"],
            k_context=val["k_context"],
            n_target=val["n_target"],
            split="val",
        )
        scores = np_task_metrics(model, tasks, latent_samples=val["latent_samples"], seed=seed)
        return {"val_log_lik": float(scores.log_lik.mean()), "val_mse": float(scores.mse.mean())}

    # The family is part of what the numbers depend on, so it joins the resume fingerprint.
    fingerprint_config = {**cfg, "function_family": data.to_spec()}
    return run_training(
        Trainable(
            algorithm=cfg["algorithm"],
            config=fingerprint_config,
            model=model,
            model_config=model_config,
            step_fn=step_fn,
            total_steps=cfg["steps"],
            examples_per_step=task["batch_tasks"] * (task["k_context_max"] + task["n_target"]),
            optimizer=optimizer,
            finalize=finalize,
        ),
        checkpoint_every=cfg["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


for _name, _label in (("cnp", "Conditional Neural Process"), ("np", "Neural Process")):
    register_algorithm(
        _name,
        train_neural_process,
        config=NeuralProcessConfig,
        label=_label,
        domain="function",
        data_type=FunctionFamily,
        model={"arch": ARCH, "kind": _name},
    )
