"""The training loop every algorithm shares: progress, stop, checkpoint, resume.

An algorithm supplies a model, an optional optimizer and a *step function*; the loop
calls ``step_fn(step, should_stop)`` for ``step = steps_done .. total_steps - 1`` and
does everything around it:

- **progress**: ``on_progress`` receives ``{"step", "total", "loss", "metrics",
  "examples_per_sec", "eta_seconds"}`` (``loss`` and ``metrics`` are means over the steps
  since the previous event) at most every ``progress_interval_s`` seconds, plus always
  after the first and the final step;
- **stop**: ``should_stop()`` is polled before every step (and may be polled inside a
  long step, which then raises :class:`StepInterrupted`); the loop saves a checkpoint
  and returns a :class:`TrainResult` with ``stopped=True``;
- **checkpoints**: every ``checkpoint_every`` finished steps, on stop and at the end;
- **resume**: when the store already holds a checkpoint of the same config, the model,
  optimizer, RNG states, numpy generators and history are restored and the run goes on
  from there. On CPU the final weights are bitwise those of an uninterrupted run,
  provided the step function draws its data from ``(seed, step)`` or from the torch
  RNG / the registered numpy generators (the loop saves and restores those).

How to use it from a new algorithm (e.g. the function-regression helpers)::

    def train_my_algo(config, data, *, on_progress=None, should_stop=None, checkpoint=None):
        torch.manual_seed(config["seed"])          # before building the model
        model = build_model(model_config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config["outer_lr"])
        def step_fn(step: int, should_stop: Callable[[], bool]) -> StepOutput:
            batch = sample_batch(config["seed"], step)   # a pure function of (seed, step)
            loss = ...; opt.zero_grad(); loss.backward(); opt.step()
            return StepOutput(loss=loss.item(), metrics={"mse": ...})
        return run_training(algorithm="my_algo", config=config, model=model, model_config=model_config,
                            optimizer=opt, step_fn=step_fn, total_steps=config["steps"],
                            examples_per_step=..., checkpoint_every=config["checkpoint_every"],
                            on_progress=on_progress, should_stop=should_stop, checkpoint=checkpoint)
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from learning.engine.checkpoints import (
    CheckpointFormatError,
    CheckpointStore,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    pack_blob,
    unpack_blob,
)
from learning.engine.progress import ProgressFn, ProgressMeter, StopFn

MAX_HISTORY = 256
"""At most this many progress events are kept in ``TrainResult.history`` (older ones thinned)."""

# Settings that may change between an interrupted run and its resumption without changing
# the trained weights (where it runs, how often it saves, how it adapts when used).
_RESUME_FREE_KEYS = (
    "device",
    "checkpoint_every",
    "eval_inner_lr",
    "eval_inner_steps",
)


class StepInterrupted(Exception):
    """Raised by a step function that saw ``should_stop()`` mid-step.

    The loop discards the unfinished step (nothing of it may have touched the model or
    the optimizer yet) and stops after the previous one.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class StepOutput:
    """What one training step reports: the scalar loss and any named float metrics."""

    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


StepFn = Callable[[int, StopFn], StepOutput]


@dataclass
class TrainResult:
    """The outcome of a training run.

    ``weights`` are CPU tensors (the model's ``state_dict``), ready for
    :func:`learning.engine.weights.weights_to_bytes`; ``model_config`` rebuilds the net with
    :func:`learning.engine.weights.build_model`; ``history`` is the (thinned) list of
    progress events; ``stopped`` is True when ``should_stop`` ended the run early.
    """

    weights: dict[str, Tensor]
    model_config: dict[str, Any]
    algorithm: str
    metrics: dict[str, float]
    steps_done: int
    stopped: bool
    history: list[dict[str, Any]]
    train_class_names: tuple[str, ...] = ()
    """Names of the classes seen in meta-training (image domains), to keep evaluation honest."""


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """SHA-256 hex of the JSON of ``config`` minus settings that do not change the numbers."""
    relevant = {k: v for k, v in config.items() if k not in _RESUME_FREE_KEYS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def _thin(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop every other event (keeping the last) once there are more than MAX_HISTORY."""
    if len(history) <= MAX_HISTORY:
        return history
    return [*history[:-1:2], history[-1]]


class _Window:
    """Running sums of loss and metrics since the last progress event."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.loss = 0.0
        self.metrics: dict[str, float] = {}
        self.examples = 0

    def add(self, out: StepOutput, examples: int) -> None:
        self.n += 1
        self.loss += out.loss
        for k, v in out.metrics.items():
            self.metrics[k] = self.metrics.get(k, 0.0) + float(v)
        self.examples += examples

    def means(self) -> tuple[float, dict[str, float]]:
        n = max(self.n, 1)
        return self.loss / n, {k: v / n for k, v in self.metrics.items()}


def _state_tensors(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    extra_state: Mapping[str, Tensor],
    device: torch.device,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {}
    if optimizer is not None:
        opt_tensors, opt_json = optimizer_state_to_tensors(optimizer)
        tensors.update(opt_tensors)
        meta["optimizer"] = opt_json
    for k, v in extra_state.items():
        tensors[f"extra.{k}"] = v
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state(device)
    return tensors, meta


def run_training(
    *,
    algorithm: str,
    config: Mapping[str, Any],
    model: nn.Module,
    model_config: Mapping[str, Any],
    step_fn: StepFn,
    total_steps: int,
    examples_per_step: int,
    optimizer: torch.optim.Optimizer | None = None,
    generators: Mapping[str, np.random.Generator] | None = None,
    extra_state: Mapping[str, Tensor] | None = None,
    checkpoint_every: int = 0,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
    finalize: Callable[[], Mapping[str, float]] | None = None,
    train_class_names: Sequence[str] = (),
    progress_interval_s: float = 0.5,
) -> TrainResult:
    """Run ``step_fn`` for steps ``0 .. total_steps - 1`` (resuming from ``checkpoint``); see the module doc.

    - ``examples_per_step``: examples (images, points) one step processes, for ``examples_per_sec``;
    - ``generators``: numpy generators the step function draws from, saved/restored by name;
    - ``extra_state``: other tensors that evolve during training (updated in place on resume);
    - ``checkpoint_every``: save every that many finished steps (0: only on stop and at the end);
    - ``finalize``: called after the last step (not on stop); its floats join ``metrics``.

    Returns a :class:`TrainResult`; ``metrics`` holds the final ``loss`` (absent if no step
    ran), the step metrics averaged over the last progress window, ``train_seconds`` (wall
    time over all sessions of this run) and whatever ``finalize`` returned. Raises
    :class:`CheckpointFormatError` if the store holds a checkpoint of a different config,
    and :class:`TrainingDiverged` on a non-finite loss.
    """
    if total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {total_steps}")
    generators = dict(generators or {})
    extra_state = dict(extra_state or {})
    stop = should_stop or (lambda: False)
    device = next(iter(model.parameters()), torch.empty(0)).device
    fingerprint = config_fingerprint(config)

    steps_done = 0
    history: list[dict[str, Any]] = []
    prior_seconds = 0.0
    last_saved = -1
    if checkpoint is not None:
        latest = checkpoint.load_latest()
        if latest is not None:
            steps_done, history, prior_seconds = _restore(
                latest, model, optimizer, generators, extra_state, fingerprint, algorithm, device
            )
            last_saved = steps_done

    def save() -> None:
        nonlocal last_saved
        if checkpoint is None or last_saved == steps_done:
            return
        tensors, meta = _state_tensors(model, optimizer, extra_state, device)
        meta.update(
            step=steps_done,
            algorithm=algorithm,
            config_fingerprint=fingerprint,
            generators={k: g.bit_generator.state for k, g in generators.items()},
            history=history,
            train_seconds=prior_seconds + (time.monotonic() - session_start),
        )
        checkpoint.save(steps_done, pack_blob(tensors, meta))
        last_saved = steps_done

    window = _Window()
    # The meter only throttles and measures the ETA; events keep the loop's own shape.
    meter = ProgressMeter(total_steps, interval_s=progress_interval_s, done=steps_done)
    session_start = meter.start
    last_emit_time = session_start
    final_loss = math.nan
    final_metrics: dict[str, float] = {}
    if history:
        final_loss = float(history[-1].get("loss", math.nan))
        final_metrics = dict(history[-1].get("metrics", {}))

    def emit(now: float) -> None:
        nonlocal last_emit_time, final_loss, final_metrics
        if window.n == 0:
            return
        loss, metrics = window.means()
        event = {
            "step": steps_done,
            "total": total_steps,
            "loss": loss,
            "metrics": metrics,
            "examples_per_sec": window.examples / max(now - last_emit_time, 1e-9),
            "eta_seconds": meter.eta_seconds(steps_done, now),
        }
        final_loss, final_metrics = loss, metrics
        history.append(event)
        history[:] = _thin(history)
        window.reset()
        meter.mark(now)
        last_emit_time = now
        if on_progress is not None:
            on_progress(event)

    stopped = False
    while steps_done < total_steps:
        if stop():
            stopped = True
            break
        try:
            out = step_fn(steps_done, stop)
        except StepInterrupted:
            stopped = True
            break
        if not math.isfinite(out.loss):
            raise TrainingDiverged(f"{algorithm}: loss became {out.loss} at step {steps_done + 1}")
        steps_done += 1
        window.add(out, examples_per_step)
        now = time.monotonic()
        if meter.due(steps_done, now):
            emit(now)
        if checkpoint_every and steps_done % checkpoint_every == 0:
            save()

    emit(time.monotonic())
    save()
    # No "loss" before the first step: NaN is not valid JSON for the Job row.
    metrics: dict[str, float] = {"loss": final_loss} if math.isfinite(final_loss) else {}
    metrics.update(final_metrics)
    metrics["train_seconds"] = prior_seconds + (time.monotonic() - session_start)
    if not stopped and finalize is not None:
        metrics.update({k: float(v) for k, v in finalize().items()})
    weights = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return TrainResult(
        weights=weights,
        model_config=dict(model_config),
        algorithm=algorithm,
        metrics=metrics,
        steps_done=steps_done,
        stopped=stopped,
        history=list(history),
        train_class_names=tuple(train_class_names),
    )


def _restore(
    latest: tuple[int, bytes],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generators: Mapping[str, np.random.Generator],
    extra_state: Mapping[str, Tensor],
    fingerprint: str,
    algorithm: str,
    device: torch.device,
) -> tuple[int, list[dict[str, Any]], float]:
    """Load a checkpoint into the live objects; returns ``(steps_done, history, train_seconds)``."""
    step, blob = latest
    tensors, meta = unpack_blob(blob)
    if meta.get("algorithm") != algorithm:
        raise CheckpointFormatError(
            f"checkpoint is for algorithm {meta.get('algorithm')!r}, this run is {algorithm!r}"
        )
    if meta.get("config_fingerprint") != fingerprint:
        raise CheckpointFormatError(
            "checkpoint was written by a run with a different config; start a new run (or a new store)"
        )
    if int(meta["step"]) != step:
        raise CheckpointFormatError(f"checkpoint stored as step {step} but records step {meta['step']}")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointFormatError("checkpoint holds no optimizer state")
        optimizer_state_from_tensors(optimizer, tensors, meta["optimizer"])
    for name, t in extra_state.items():
        with torch.no_grad():
            t.copy_(tensors[f"extra.{name}"])
    for name, g in generators.items():
        g.bit_generator.state = meta["generators"][name]
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if device.type == "cuda" and "rng.torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.torch_cuda"], device)
    return step, list(meta.get("history", [])), float(meta.get("train_seconds", 0.0))
