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
        run = Trainable(algorithm="my_algo", config=config, model=model, model_config=model_config,
                        optimizer=opt, step_fn=step_fn, total_steps=config["steps"], examples_per_step=...)
        return run_training(run, checkpoint_every=config["checkpoint_every"],
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


@dataclass
class Trainable:
    """What :func:`run_training` trains, and the state it saves and restores with it.

    - ``step_fn(step, should_stop) -> StepOutput`` runs one step; ``total_steps`` of them;
    - ``examples_per_step``: examples (images, points) one step processes, for ``examples_per_sec``;
    - ``generators``: numpy generators the step function draws from, saved/restored by name;
    - ``extra_state``: other tensors that evolve during training (updated in place on resume);
    - ``finalize``: called after the last step (not on stop); its floats join ``metrics``;
    - ``train_class_names``: recorded in the result, so evaluations can refuse those classes.
    """

    algorithm: str
    config: Mapping[str, Any]
    model: nn.Module
    model_config: Mapping[str, Any]
    step_fn: StepFn
    total_steps: int
    examples_per_step: int
    optimizer: torch.optim.Optimizer | None = None
    generators: Mapping[str, np.random.Generator] = field(default_factory=dict)
    extra_state: Mapping[str, Tensor] = field(default_factory=dict)
    finalize: Callable[[], Mapping[str, float]] | None = None
    train_class_names: Sequence[str] = ()


def run_training(
    run: Trainable,
    *,
    checkpoint_every: int = 0,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
    progress_interval_s: float = 0.5,
) -> TrainResult:
    """Run ``run.step_fn`` for steps ``0 .. total_steps - 1``, resuming from ``checkpoint``; see the module.

    ``checkpoint_every``: save every that many finished steps (0: only on stop and at the end).

    Returns a :class:`TrainResult`; ``metrics`` holds the final ``loss`` (absent if no step
    ran), the step metrics averaged over the last progress window, ``train_seconds`` (wall
    time over all sessions of this run) and whatever ``finalize`` returned. Raises
    :class:`CheckpointFormatError` if the store holds a checkpoint of a different config,
    and :class:`TrainingDiverged` on a non-finite loss.
    """
    if run.total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {run.total_steps}")
    session = _Session(run, checkpoint, on_progress, progress_interval_s)
    stop = should_stop or (lambda: False)
    stopped = False
    while session.steps_done < run.total_steps:
        if stop():
            stopped = True
            break
        try:
            out = run.step_fn(session.steps_done, stop)
        except StepInterrupted:
            stopped = True
            break
        if not math.isfinite(out.loss):
            raise TrainingDiverged(
                f"{run.algorithm}: loss became {out.loss} at step {session.steps_done + 1}"
            )
        session.advance(out, checkpoint_every)
    session.emit(time.monotonic())
    session.save()
    return session.result(stopped)


class _Session:
    """One session of a run: the state restored from the last checkpoint, and what it adds."""

    def __init__(
        self,
        run: Trainable,
        checkpoint: CheckpointStore | None,
        on_progress: ProgressFn | None,
        progress_interval_s: float,
    ) -> None:
        self.run, self.checkpoint, self.on_progress = run, checkpoint, on_progress
        self.device = next(iter(run.model.parameters()), torch.empty(0)).device
        self.fingerprint = config_fingerprint(run.config)
        self.steps_done = 0
        self.history: list[dict[str, Any]] = []
        self.prior_seconds = 0.0
        self.last_saved = -1
        if checkpoint is not None:
            latest = checkpoint.load_latest()
            if latest is not None:
                self.steps_done, self.history, self.prior_seconds = _restore(
                    latest, run, self.fingerprint, self.device
                )
                self.last_saved = self.steps_done
        self.window = _Window()
        # The meter only throttles and measures the ETA; events keep the loop's own shape.
        self.meter = ProgressMeter(run.total_steps, interval_s=progress_interval_s, done=self.steps_done)
        self.last_emit_time = self.meter.start
        self.final_loss = math.nan
        self.final_metrics: dict[str, float] = {}
        if self.history:
            self.final_loss = float(self.history[-1].get("loss", math.nan))
            self.final_metrics = dict(self.history[-1].get("metrics", {}))

    def advance(self, out: StepOutput, checkpoint_every: int) -> None:
        """Count one finished step: report it when due, checkpoint it when due."""
        self.steps_done += 1
        self.window.add(out, self.run.examples_per_step)
        now = time.monotonic()
        if self.meter.due(self.steps_done, now):
            self.emit(now)
        if checkpoint_every and self.steps_done % checkpoint_every == 0:
            self.save()

    def seconds(self) -> float:
        return self.prior_seconds + (time.monotonic() - self.meter.start)

    def save(self) -> None:
        if self.checkpoint is None or self.last_saved == self.steps_done:
            return
        run = self.run
        tensors, meta = _state_tensors(run.model, run.optimizer, run.extra_state, self.device)
        meta.update(
            step=self.steps_done,
            algorithm=run.algorithm,
            config_fingerprint=self.fingerprint,
            generators={k: g.bit_generator.state for k, g in run.generators.items()},
            history=self.history,
            train_seconds=self.seconds(),
        )
        self.checkpoint.save(self.steps_done, pack_blob(tensors, meta))
        self.last_saved = self.steps_done

    def emit(self, now: float) -> None:
        if self.window.n == 0:
            return
        loss, metrics = self.window.means()
        event = {
            "step": self.steps_done,
            "total": self.run.total_steps,
            "loss": loss,
            "metrics": metrics,
            "examples_per_sec": self.window.examples / max(now - self.last_emit_time, 1e-9),
            "eta_seconds": self.meter.eta_seconds(self.steps_done, now),
        }
        self.final_loss, self.final_metrics = loss, metrics
        self.history.append(event)
        self.history[:] = _thin(self.history)
        self.window.reset()
        self.meter.mark(now)
        self.last_emit_time = now
        if self.on_progress is not None:
            self.on_progress(event)

    def result(self, stopped: bool) -> TrainResult:
        run = self.run
        # No "loss" before the first step: NaN is not valid JSON for the Job row.
        metrics: dict[str, float] = {"loss": self.final_loss} if math.isfinite(self.final_loss) else {}
        metrics.update(self.final_metrics)
        metrics["train_seconds"] = self.seconds()
        if not stopped and run.finalize is not None:
            metrics.update({k: float(v) for k, v in run.finalize().items()})
        weights = {k: v.detach().to("cpu").clone() for k, v in run.model.state_dict().items()}
        return TrainResult(
            weights=weights,
            model_config=dict(run.model_config),
            algorithm=run.algorithm,
            metrics=metrics,
            steps_done=self.steps_done,
            stopped=stopped,
            history=list(self.history),
            train_class_names=tuple(run.train_class_names),
        )


def _restore(
    latest: tuple[int, bytes], run: Trainable, fingerprint: str, device: torch.device
) -> tuple[int, list[dict[str, Any]], float]:
    """Load a checkpoint into the run's live objects; returns ``(steps_done, history, train_seconds)``."""
    model, optimizer, algorithm = run.model, run.optimizer, run.algorithm
    generators, extra_state = run.generators, run.extra_state
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
