"""Conditional and latent Neural Processes (Garnelo et al., 2018) for 1-D function regression.

Both models map a context set ``{(x_i, y_i)}`` and target inputs ``x_t`` to a Gaussian
per target point, ``N(mean(x_t), std(x_t)^2)``.

- ``cnp``: an encoder MLP embeds each ``(x_i, y_i)``, the embeddings are averaged into
  ``r`` (so the model is invariant to the order and the number of context points), and a
  decoder MLP maps ``(r, x_t)`` to the mean and ``std = min_std + (1 - min_std) * softplus(.)``.
  Trained by maximum likelihood on targets that include the context points.
- ``np``: a latent path embeds, averages and maps the set to a diagonal Gaussian
  ``q(z | set)``; the decoder sees ``(z, x_t)`` (and ``r`` too when ``deterministic_path``
  is on). Trained on the ELBO with the context part of the targets,
  ``E_{q(z|C+T)}[log p(y_T | x_T, z)] - KL(q(z|C+T) || q(z|C))``, per target point.

The std floor defaults to 0.01 rather than the 0.1 of DeepMind's reference code: the
``gp-1d`` observation noise is 0.02, and a 0.1 floor would cap the log-likelihood a model
can reach near the context points well below the GP oracle's. All training randomness
(context size, tasks, latent noise) comes from ``step_rng(seed, "train", step)``, never
from torch's RNG, so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.algorithms import register_algorithm
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import (
    ConfigError,
    get_bool,
    get_choice,
    get_float,
    get_int,
    get_section,
    reject_unknown,
)
from learning.engine.device import DEVICE_CHOICES, resolve_device
from learning.engine.functions import FunctionFamily, FunctionTasks, heldout_tasks, step_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult, run_training
from learning.engine.nets import register_model


def _mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` linear layers with ReLUs between, hidden width ``hidden``, ``in_dim`` to ``out_dim``."""
    mods: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, out_dim))
    return nn.Sequential(*mods)


@dataclass(frozen=True)
class NPConfig:
    """Architecture of a CNP or latent NP; every field is recorded in the model config."""

    kind: str = "cnp"
    """``cnp`` or ``np``."""
    x_dim: int = 1
    y_dim: int = 1
    hidden: int = 128
    """Width of every hidden layer and of the representation ``r``."""
    encoder_layers: int = 3
    decoder_layers: int = 3
    latent_dim: int = 64
    """Size of ``z`` (``np`` only)."""
    deterministic_path: bool = False
    """``np`` only: also feed the mean-aggregated deterministic ``r`` to the decoder."""
    min_std: float = 0.01
    """Floor of the predictive standard deviation, in units of ``y``."""

    def __post_init__(self) -> None:
        if self.kind not in ("cnp", "np"):
            raise ValueError(f"neural process kind must be 'cnp' or 'np', got {self.kind!r}")
        for name in ("x_dim", "y_dim", "hidden", "encoder_layers", "decoder_layers", "latent_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.min_std < 1.0:
            raise ValueError(f"min_std must lie in (0, 1), got {self.min_std}")

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> NPConfig:
        """The config from a mapping with a subset of the field names; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown neural process settings {unknown}; known: {sorted(known)}")
        return cls(**d)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class GaussianLatent:
    """A diagonal Gaussian over ``z``; ``mean`` and ``std`` of shape ``(B, latent_dim)``."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean = mean
        self.std = std

    def rsample(self, eps: Tensor) -> Tensor:
        """Reparameterized samples for given standard-normal ``eps`` ``(S, B, latent_dim)``; same shape."""
        return self.mean + self.std * eps

    def kl_to(self, other: GaussianLatent) -> Tensor:
        """``KL(self || other)`` in nats, summed over latent dimensions; shape ``(B,)``."""
        var_ratio = (self.std / other.std) ** 2
        diff = ((self.mean - other.mean) / other.std) ** 2
        return 0.5 * (var_ratio + diff - 1.0 - torch.log(var_ratio)).sum(-1)


class NPLoss(NamedTuple):
    """One training objective evaluation; all scalars, nats per target point."""

    loss: Tensor
    """What is minimized: ``-log_lik`` (cnp) or ``kl - log_lik`` (np)."""
    log_lik: Tensor
    """Mean log-likelihood of the targets (context included)."""
    kl: Tensor
    """``KL(q(z|C+T) || q(z|C))`` per target point; zero for a cnp."""


class NeuralProcess(nn.Module):
    """A CNP (``config.kind == "cnp"``) or latent NP (``"np"``); see the module docstring."""

    def __init__(self, config: NPConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        pair = c.x_dim + c.y_dim
        self.uses_latent = c.kind == "np"
        self.uses_deterministic = c.kind == "cnp" or c.deterministic_path
        dec_in = c.x_dim
        if self.uses_deterministic:
            self.det_encoder = _mlp(pair, c.hidden, c.encoder_layers, c.hidden)
            dec_in += c.hidden
        if self.uses_latent:
            self.latent_encoder = _mlp(pair, c.hidden, c.encoder_layers, c.hidden)
            # From the aggregated set embedding to (mean, raw std) of z.
            self.latent_head = nn.Sequential(
                nn.ReLU(), nn.Linear(c.hidden, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 2 * c.latent_dim)
            )
            dec_in += c.latent_dim
        self.decoder = _mlp(dec_in, c.hidden, c.decoder_layers, 2 * c.y_dim)

    def deterministic_representation(self, x_ctx: Tensor, y_ctx: Tensor) -> Tensor:
        """Mean-aggregated context embedding ``r``; inputs ``(B, K, ·)``, returns ``(B, hidden)``."""
        return self.det_encoder(torch.cat([x_ctx, y_ctx], dim=-1)).mean(dim=1)

    def latent(self, x: Tensor, y: Tensor) -> GaussianLatent:
        """``q(z | {(x_i, y_i)})`` for a set ``(B, N, ·)``; std in ``(0.1, 1)`` as in Garnelo et al."""
        s = self.latent_encoder(torch.cat([x, y], dim=-1)).mean(dim=1)
        mean, raw = self.latent_head(s).chunk(2, dim=-1)
        return GaussianLatent(mean, 0.1 + 0.9 * torch.sigmoid(raw))

    def decode(self, x_tgt: Tensor, r: Tensor | None, z: Tensor | None) -> tuple[Tensor, Tensor]:
        """Predictive mean and std at ``x_tgt`` ``(B, T, x_dim)``.

        ``r`` is ``(B, hidden)`` or None; ``z`` is ``(S, B, latent_dim)`` or None. Returns two
        tensors of shape ``(S, B, T, y_dim)`` (``S = 1`` without a latent), units of ``y``.
        """
        n_samples = 1 if z is None else z.shape[0]
        batch, n_tgt = x_tgt.shape[0], x_tgt.shape[1]
        parts = [x_tgt.unsqueeze(0).expand(n_samples, -1, -1, -1)]
        if r is not None:
            parts.append(r[None, :, None, :].expand(n_samples, batch, n_tgt, -1))
        if z is not None:
            parts.append(z[:, :, None, :].expand(-1, -1, n_tgt, -1))
        out = self.decoder(torch.cat(parts, dim=-1))
        mean, raw = out.chunk(2, dim=-1)
        floor = self.config.min_std
        return mean, floor + (1.0 - floor) * F.softplus(raw)

    def predict(
        self, x_ctx: Tensor, y_ctx: Tensor, x_tgt: Tensor, eps: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Predictions from the context alone: mean and std of shape ``(S, B, T, y_dim)``.

        For ``np``, ``z`` comes from the prior ``q(z | context)`` with the given standard
        normal ``eps`` ``(S, B, latent_dim)``, required; for ``cnp`` ``eps`` is ignored and ``S = 1``.
        """
        r = self.deterministic_representation(x_ctx, y_ctx) if self.uses_deterministic else None
        z = None
        if self.uses_latent:
            if eps is None:
                raise ValueError("a latent NP needs eps to sample z")
            z = self.latent(x_ctx, y_ctx).rsample(eps)
        return self.decode(x_tgt, r, z)

    def training_loss(
        self, x_ctx: Tensor, y_ctx: Tensor, x_tgt: Tensor, y_tgt: Tensor, eps: Tensor | None = None
    ) -> NPLoss:
        """The training objective on one batch, as :class:`NPLoss` (scalars, nats per target point).

        Targets are the context plus ``(x_tgt, y_tgt)``. ``cnp``: negative mean
        log-likelihood. ``np``: negative ELBO per target point, with ``z`` drawn from the
        posterior ``q(z | C + T)`` using ``eps`` of shape ``(S, B, latent_dim)``.
        """
        x_all = torch.cat([x_ctx, x_tgt], dim=1)
        y_all = torch.cat([y_ctx, y_tgt], dim=1)
        r = self.deterministic_representation(x_ctx, y_ctx) if self.uses_deterministic else None
        if not self.uses_latent:
            mean, std = self.decode(x_all, r, None)
            log_lik = gaussian_log_prob(y_all, mean, std).mean()
            return NPLoss(-log_lik, log_lik, torch.zeros_like(log_lik))
        if eps is None:
            raise ValueError("a latent NP needs eps to sample z")
        prior = self.latent(x_ctx, y_ctx)
        posterior = self.latent(x_all, y_all)
        mean, std = self.decode(x_all, r, posterior.rsample(eps))
        # Sum over y dimensions, average over samples and points: nats per target point.
        log_lik = gaussian_log_prob(y_all, mean, std).sum(-1).mean()
        kl = (posterior.kl_to(prior) / x_all.shape[1]).mean()
        return NPLoss(kl - log_lik, log_lik, kl)


def gaussian_log_prob(y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Element-wise ``log N(y; mean, std^2)`` in nats; shapes broadcast."""
    return -0.5 * math.log(2 * math.pi) - torch.log(std) - 0.5 * ((y - mean) / std) ** 2


class NPTaskMetrics(NamedTuple):
    """Per-task scores of a neural process on held-out targets; float64 arrays of shape ``(B,)``."""

    mse: np.ndarray
    """Mean squared error of the predictive mean over targets, units of ``y`` squared."""
    log_lik: np.ndarray
    """Mean over targets of the marginal ``log p(y_t | x_t, context)``, nats per point."""
    joint_log_lik: np.ndarray
    """``log p(y_1..y_T | x, context) / T``, nats per point (equal to ``log_lik`` for a cnp)."""


@torch.no_grad()
def np_task_metrics(
    model: NeuralProcess,
    tasks: FunctionTasks,
    *,
    latent_samples: int = 32,
    seed: int = 0,
    chunk: int = 100,
) -> NPTaskMetrics:
    """Score ``model`` on ``tasks`` (context -> targets); returns :class:`NPTaskMetrics`.

    A cnp's predictive is exact. For an np, ``z`` is drawn ``latent_samples`` times from
    ``q(z | context)`` (standard normals from PCG64 seeded by ``seed``) and the
    likelihoods are Monte-Carlo estimates ``log (1/S) sum_s p(y | z_s)``, which are
    biased low for finite ``S`` (Jensen); the mean prediction averages the ``S`` means.
    Tasks go through in chunks of ``chunk`` to bound memory.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_samples = latent_samples if model.uses_latent else 1
    rng = np.random.Generator(np.random.PCG64(seed))
    outs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, tasks.batch, chunk):
        part = tasks.select(slice(start, start + chunk))
        x_ctx, y_ctx, x_tgt, y_tgt = (torch.from_numpy(a).to(device) for a in part)
        eps = None
        if model.uses_latent:
            eps_np = rng.standard_normal((n_samples, part.batch, model.config.latent_dim)).astype(np.float32)
            eps = torch.from_numpy(eps_np).to(device)
        mean, std = model.predict(x_ctx, y_ctx, x_tgt, eps)  # (S, B, T, 1)
        # float64 for the log-sum-exp over samples and points.
        log_p = gaussian_log_prob(y_tgt.double(), mean.double(), std.double()).sum(-1)  # (S, B, T)
        log_s = math.log(n_samples)
        marginal = (torch.logsumexp(log_p, dim=0) - log_s).mean(-1)
        joint = (torch.logsumexp(log_p.sum(-1), dim=0) - log_s) / log_p.shape[-1]
        mse = ((mean.double().mean(0) - y_tgt.double()) ** 2).mean(dim=(1, 2))
        outs.append((mse.cpu().numpy(), marginal.cpu().numpy(), joint.cpu().numpy()))
    model.train(was_training)
    return NPTaskMetrics(*(np.concatenate([o[i] for o in outs]) for i in range(3)))


# ----------------------------------------------------------------------------------------
# Training: config, model registration, and the train functions for ``cnp`` and ``np``.

ARCH = "neural_process"
"""``model_config["arch"]`` of every neural process."""

_TOP_KEYS = (
    "algorithm",
    "domain",
    "seed",
    "steps",
    "device",
    "checkpoint_every",
    "lr",
    "latent_samples",
    "task",
    "model",
    "validation",
)
_TASK_DEFAULTS: dict[str, int] = {"batch_tasks": 16, "k_context_min": 3, "k_context_max": 50, "n_target": 50}
_VALIDATION_DEFAULTS: dict[str, int] = {"tasks": 256, "k_context": 10, "n_target": 50, "latent_samples": 16}


def _get_device(config: Mapping[str, Any]) -> str:
    value = config.get("device", "auto")
    if isinstance(value, str) and re.fullmatch(r"cuda:\d+", value):
        return value
    return get_choice(config, "device", "auto", DEVICE_CHOICES)


def validate_np_config(config: dict[str, Any]) -> dict[str, Any]:
    """A complete copy of a ``cnp`` / ``np`` config with defaults filled in.

    Settings: ``seed`` (0), ``steps`` (20000), ``device`` (auto), ``checkpoint_every``
    (1000), ``lr`` (Adam, 5e-4), ``latent_samples`` (np: z samples per task in the ELBO, 1),
    ``task`` (``batch_tasks`` 16; ``k_context`` uniform in ``[k_context_min 3,
    k_context_max 50]`` per step; ``n_target`` 50 extra targets), ``model``
    (:class:`NPConfig` fields except ``kind``, ``x_dim``, ``y_dim``), ``validation`` (scored at the end on the
    ``val`` stream: ``tasks`` 256 (0 = skip), ``k_context`` 10, ``n_target`` 50,
    ``latent_samples`` 16). Raises :class:`ConfigError` naming the field.
    """
    reject_unknown(config, _TOP_KEYS)
    out = dict(config)
    out["algorithm"] = get_choice(config, "algorithm", None, ("cnp", "np"))
    out["domain"] = "function"
    out["seed"] = get_int(config, "seed", 0, minimum=0, maximum=2**63 - 1)
    out["steps"] = get_int(config, "steps", 20000, minimum=1, maximum=10_000_000)
    out["device"] = _get_device(config)
    out["checkpoint_every"] = get_int(config, "checkpoint_every", 1000, minimum=0)
    out["lr"] = get_float(config, "lr", 5e-4, positive=True)
    out["latent_samples"] = get_int(config, "latent_samples", 1, minimum=1, maximum=64)

    task = get_section(config, "task")
    reject_unknown(task, _TASK_DEFAULTS, "task")
    t = {k: get_int(task, k, v, minimum=1, prefix="task") for k, v in _TASK_DEFAULTS.items()}
    if t["k_context_min"] > t["k_context_max"]:
        raise ConfigError(
            "task.k_context_min",
            f"must be <= task.k_context_max ({t['k_context_max']}), got {t['k_context_min']}",
        )
    out["task"] = t

    model = get_section(config, "model")
    # kind comes from the algorithm, and the input/output sizes from the (1-D) function family.
    fields = [f for f in NPConfig.__dataclass_fields__ if f not in ("kind", "x_dim", "y_dim")]
    reject_unknown(model, fields, "model")
    defaults = NPConfig()
    m: dict[str, Any] = {}
    for name in fields:
        default = getattr(defaults, name)
        if isinstance(default, bool):
            m[name] = get_bool(model, name, default, prefix="model")
        elif isinstance(default, int):
            m[name] = get_int(model, name, default, minimum=1, maximum=4096, prefix="model")
        else:
            m[name] = get_float(model, name, default, positive=True, maximum=0.999, prefix="model")
    out["model"] = m

    val = get_section(config, "validation")
    reject_unknown(val, _VALIDATION_DEFAULTS, "validation")
    out["validation"] = {
        k: get_int(val, k, v, minimum=0 if k == "tasks" else 1, prefix="validation")
        for k, v in _VALIDATION_DEFAULTS.items()
    }
    return out


def model_config_for(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able ``model_config`` (``arch`` = ``neural_process``) of a validated config."""
    return {"arch": ARCH, "kind": config["algorithm"], **config["model"]}


def build_neural_process(model_config: Mapping[str, Any]) -> NeuralProcess:
    """A freshly initialized :class:`NeuralProcess` for a ``model_config`` from :func:`model_config_for`."""
    fields = {k: v for k, v in model_config.items() if k != "arch"}
    return NeuralProcess(NPConfig.from_dict(fields))


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
    cfg = validate_np_config(dict(config))
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
        algorithm=cfg["algorithm"],
        config=fingerprint_config,
        model=model,
        model_config=model_config,
        step_fn=step_fn,
        total_steps=cfg["steps"],
        examples_per_step=task["batch_tasks"] * (task["k_context_max"] + task["n_target"]),
        optimizer=optimizer,
        checkpoint_every=cfg["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
        finalize=finalize,
    )


register_model(ARCH, build_neural_process)
for _name in ("cnp", "np"):
    register_algorithm(
        _name, train_neural_process, validate=validate_np_config, domain="function", data_type=FunctionFamily
    )
