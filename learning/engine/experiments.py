"""The experiment protocol, once: meta-train then evaluate, or transfer then compare with scratch.

Everything that runs an experiment (the worker's job runners, the management commands,
the benchmarks, the tests) calls these functions and nothing else of the protocol:

- :func:`meta_train_and_evaluate`: train ``config`` on ``data``, then evaluate the result on
  held-out classes (images and embedded texts: accuracy) or held-out tasks (functions: MSE
  and log-likelihood).
- :func:`transfer_and_compare`: the transfer run, a from-scratch baseline with the same data,
  steps and optimizer, and a paired comparison on identical episodes at each shot count.
- :func:`evaluate`: an existing model's weights on held-out episodes.

What the caller hears and decides travels in one :class:`Hooks`. Progress events are
``(phase, event)``: a training event (it has ``step``; see :mod:`learning.engine.loop`)
or an evaluation event (it has ``done``: episodes counted across every evaluation of the
experiment, with ``total``, ``eta_seconds`` and ``episodes_per_sec``; see
:mod:`learning.engine.progress`). A stop request ends the experiment with a report whose
``stopped`` is True and no scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn

from learning.engine.algorithms import train, validate_config
from learning.engine.algorithms.transfer import TransferData, scratch_config
from learning.engine.checkpoints import CheckpointStore
from learning.engine.data import EpisodeData
from learning.engine.evaluation import (
    MIN_PROTOCOL_EPISODES,
    EvalResult,
    evaluate_model,
    paired_comparison,
)
from learning.engine.functions import FunctionFamily, heldout_tasks
from learning.engine.loop import TrainResult
from learning.engine.progress import EvaluationStopped, StopFn
from learning.engine.regression_eval import function_scores
from learning.engine.weights import load_model

PhaseProgressFn = Callable[[str, dict[str, Any]], None]
"""``fn(phase, event)``: phase is ``training``, ``transferring``, ``baseline`` or ``evaluating``."""


@dataclass(frozen=True)
class Hooks:
    """What the caller of an experiment hears and decides; every field is optional."""

    on_progress: PhaseProgressFn | None = None
    should_stop: StopFn | None = None
    """Polled between steps and evaluation batches; it must be cheap."""
    checkpoint_for: Callable[[str], CheckpointStore | None] | None = None
    """Run name (``train``, ``transfer``, ``scratch``) -> where that run keeps its checkpoints."""

    def checkpoint(self, run: str) -> CheckpointStore | None:
        return self.checkpoint_for(run) if self.checkpoint_for is not None else None


@dataclass(frozen=True)
class EpisodePlan:
    """The held-out episodes an evaluation draws, as the literature's protocol asks.

    ``classes`` are the held-out class indices (image and text domains; ignored for functions).
    ``query`` is queries per class (images) or target points per task (functions); a
    function task has ``k_shot`` context points. The same plan and seed give every model
    the very same episodes.
    """

    n_way: int
    k_shot: int
    query: int
    classes: Sequence[int] = ()
    within_group: bool = False
    episodes: int = MIN_PROTOCOL_EPISODES
    seed: int = 0
    strict: bool = True
    """False allows fewer than the protocol's 600 episodes (tests, quick looks)."""
    transductive: bool = False
    """Normalize by the statistics of support and queries together, as the papers do, rather
    than the support's alone; a query's score then depends on the other queries."""


@dataclass(frozen=True)
class Score:
    """One evaluation: ``mean`` and ``ci95`` (95 % half-width) of ``metric`` over ``episodes``.

    ``metric`` is ``accuracy`` (a fraction), ``mse`` or ``log_likelihood`` (per target
    point). For a transfer, ``baseline_*`` is the scratch baseline on the same episodes and
    ``gain_ci95`` the half-width of the paired per-episode difference; else they are None.
    """

    metric: str
    shots: int
    mean: float
    ci95: float
    episodes: int
    baseline_mean: float | None = None
    baseline_ci95: float | None = None
    gain_ci95: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields, without the baseline ones when there is no baseline."""
        out = {k: getattr(self, k) for k in ("metric", "shots", "mean", "ci95", "episodes")}
        if self.baseline_mean is not None:
            out |= {"baseline_mean": self.baseline_mean, "baseline_ci95": self.baseline_ci95}
            out["gain_ci95"] = self.gain_ci95
        return out


@dataclass(frozen=True)
class MetaTrainReport:
    """A meta-training run and its held-out scores (none when it stopped early)."""

    result: TrainResult
    scores: list[Score] = field(default_factory=list)
    stopped: bool = False


@dataclass(frozen=True)
class TransferReport:
    """A transfer run, its scratch baseline (None if stopped before it) and the scores per shot count."""

    transferred: TrainResult
    baseline: TrainResult | None
    scores: list[Score] = field(default_factory=list)
    stopped: bool = False


class _EpisodeCount:
    """Evaluation progress over several evaluations in a row, as one phase.

    Hands each engine evaluation its ``on_progress``; ``done`` counts episodes across all
    of them and the ETA is the episodes left at the rate measured so far.
    """

    def __init__(self, hooks: Hooks, total: int) -> None:
        self.hooks, self.total = hooks, total
        self._finished = 0
        self._start = time.monotonic()

    def begin(self) -> None:
        self._emit(0, None, 0.0)

    def callbacks(self) -> dict[str, Any]:
        return {"on_progress": self._report, "should_stop": self.hooks.should_stop}

    def _report(self, event: Mapping[str, Any]) -> None:
        done = self._finished + event["done"]
        if event["done"] == event["total"]:
            self._finished += event["total"]
        rate = done / max(time.monotonic() - self._start, 1e-9)
        self._emit(done, (self.total - done) / rate if done else None, rate)

    def _emit(self, done: int, eta: float | None, rate: float) -> None:
        if self.hooks.on_progress is not None:
            event = {"done": done, "total": self.total, "eta_seconds": eta, "episodes_per_sec": rate}
            self.hooks.on_progress("evaluating", event)


def _trained_event(result: TrainResult, step: int, total: int) -> dict[str, Any]:
    """The training event that closes training: final metrics, nothing left."""
    metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
    return {"step": step, "total": total, "loss": metrics.get("loss"), "metrics": metrics, "eta_seconds": 0.0}


def _train_run(
    config: Mapping[str, Any], data: object, hooks: Hooks, *, phase: str, run: str, offset: int, total: int
) -> TrainResult:
    """One training run whose events are reported as ``phase``, ``offset`` steps into ``total``
    (``run_step`` keeps the run's own step, so the runs of a comparison can be drawn side by side)."""

    def on_progress(event: dict[str, Any]) -> None:
        if hooks.on_progress is not None:
            hooks.on_progress(
                phase, {**event, "step": event["step"] + offset, "run_step": event["step"], "total": total}
            )

    return train(
        config,
        data,
        on_progress=on_progress,
        should_stop=hooks.should_stop,
        checkpoint=hooks.checkpoint(run),
    )


def evaluate(
    algorithm: str,
    weights: Mapping[str, Tensor],
    model_config: Mapping[str, Any],
    data: EpisodeData | FunctionFamily,
    plan: EpisodePlan,
    *,
    seen_class_names: Sequence[str] | None = None,
    device: str = "auto",
    hooks: Hooks = Hooks(),
) -> list[Score]:
    """Scores of a trained model on the plan's held-out episodes (accuracy, or MSE and log-likelihood).

    ``seen_class_names`` (images) makes any overlap with the meta-training classes an
    error; ``device`` is where image episodes run. Raises :class:`EvaluationStopped` when
    ``hooks.should_stop`` asks.
    """
    count = _EpisodeCount(hooks, plan.episodes)
    count.begin()
    return _scores(algorithm, weights, model_config, data, plan, seen_class_names, device, count)


def _scores(
    algorithm: str,
    weights: Mapping[str, Tensor],
    model_config: Mapping[str, Any],
    data: EpisodeData | FunctionFamily,
    plan: EpisodePlan,
    seen_class_names: Sequence[str] | None,
    device: str,
    count: _EpisodeCount,
) -> list[Score]:
    if isinstance(data, FunctionFamily):
        tasks = heldout_tasks(
            data, seed=plan.seed, n_tasks=plan.episodes, k_context=plan.k_shot, n_target=plan.query
        )
        model = load_model(weights, model_config)
        scores = function_scores(algorithm, model, model_config, tasks, **count.callbacks())
        return [Score(metric, plan.k_shot, s.mean, s.ci95, s.n_tasks) for metric, s in scores]
    model = load_model(weights, model_config)
    outcome = _accuracy(algorithm, model, model_config, data, plan, seen_class_names, device, count)
    return [Score("accuracy", plan.k_shot, outcome.mean, outcome.ci95, outcome.episodes)]


def meta_train_and_evaluate(
    config: Mapping[str, Any],
    data: EpisodeData | FunctionFamily,
    plan: EpisodePlan,
    hooks: Hooks = Hooks(),
) -> MetaTrainReport:
    """Meta-train ``config`` on ``data`` (checkpoint run ``train``), then score it on ``plan``.

    Training events are reported as phase ``training``. The trained model's own
    meta-training classes are refused as evaluation classes. Raises ``ConfigError`` for a
    bad config.
    """
    config = validate_config(config, data)
    steps = config["steps"]
    result = _train_run(config, data, hooks, phase="training", run="train", offset=0, total=steps)
    if result.stopped:
        return MetaTrainReport(result, stopped=True)
    count = _EpisodeCount(hooks, plan.episodes)
    if hooks.on_progress is not None:
        hooks.on_progress("evaluating", _trained_event(result, result.steps_done, steps))
    count.begin()
    try:
        scores = _scores(
            result.algorithm,
            result.weights,
            result.model_config,
            data,
            plan,
            result.train_class_names,
            config["device"],
            count,
        )
    except EvaluationStopped:
        return MetaTrainReport(result, stopped=True)
    return MetaTrainReport(result, scores)


def transfer_and_compare(
    config: Mapping[str, Any],
    data: TransferData,
    plan: EpisodePlan,
    shots: Sequence[int],
    hooks: Hooks = Hooks(),
) -> TransferReport:
    """Transfer ``config`` from the source onto the target, train the scratch baseline, compare.

    Both runs train ``config["steps"]`` steps; their events are reported as phases
    ``transferring`` then ``baseline``, steps counted across both (``total`` is twice the
    steps). Both models are then scored on the plan's held-out classes of the target (an image
    domain, or a text domain of sentence embeddings with a text source) at every shot count
    of ``shots`` (``plan.k_shot`` is replaced), on identical episodes, and compared
    episode by episode.
    """
    config = validate_config(config, data)
    total = 2 * config["steps"]
    transferred = _train_run(config, data, hooks, phase="transferring", run="transfer", offset=0, total=total)
    if transferred.stopped:
        return TransferReport(transferred, None, stopped=True)
    baseline = _train_run(
        scratch_config(config),
        data,
        hooks,
        phase="baseline",
        run="scratch",
        offset=config["steps"],
        total=total,
    )
    if baseline.stopped:
        return TransferReport(transferred, baseline, stopped=True)
    if hooks.on_progress is not None:
        hooks.on_progress("evaluating", _trained_event(transferred, total, total))
    count = _EpisodeCount(hooks, 2 * len(shots) * plan.episodes)
    count.begin()
    scores = []
    # Each net is built once for every shot count; the embeddings cannot be shared across shot
    # counts, since each query is normalized by its own episode's support set.
    nets = [(r, load_model(r.weights, r.model_config)) for r in (transferred, baseline)]
    try:
        for k in shots:
            at_k = replace(plan, k_shot=k)
            ours, theirs = (
                _accuracy(
                    r.algorithm,
                    net,
                    r.model_config,
                    data.target,
                    at_k,
                    r.train_class_names,
                    config["device"],
                    count,
                )
                for r, net in nets
            )
            paired = paired_comparison(ours, theirs)
            scores.append(
                Score(
                    "accuracy",
                    k,
                    ours.mean,
                    ours.ci95,
                    ours.episodes,
                    baseline_mean=theirs.mean,
                    baseline_ci95=theirs.ci95,
                    gain_ci95=paired["ci95"],
                )
            )
    except EvaluationStopped:
        return TransferReport(transferred, baseline, stopped=True)
    return TransferReport(transferred, baseline, scores)


def _accuracy(
    algorithm: str,
    model: nn.Module,
    model_config: Mapping[str, Any],
    data: EpisodeData,
    plan: EpisodePlan,
    seen_class_names: Sequence[str] | None,
    device: str,
    count: _EpisodeCount,
) -> EvalResult:
    return evaluate_model(
        algorithm,
        model,
        data,
        classes=plan.classes,
        n_way=plan.n_way,
        k_shot=plan.k_shot,
        query=plan.query,
        within_group=plan.within_group,
        episodes=plan.episodes,
        seed=plan.seed,
        adapt=model_config.get("adapt", {}),
        seen_class_names=seen_class_names,
        device=device,
        strict=plan.strict,
        transductive=plan.transductive,
        **count.callbacks(),
    )
