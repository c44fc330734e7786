"""Comparing runs side by side: models and jobs, their curves, their configs as a diff, their scores.

A run is a model (its config is its hyperparameters, its curve the history of the job that
trained it) or a job (its engine config and its own history). :func:`comparison` reads the
runs ``user`` may see, in the order asked, and lines them up:

- ``settings``: one row per config key (dotted), a value per run; rows whose values differ
  come first, so what changed between the runs is what a reader sees;
- ``scores``: one row per (target, task spec, shots, metric), a score per run with its
  95% CI, so evaluations on identical episodes stand next to each other;
- ``curves``: each run's metric history, for the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.http import Http404
from django.urls import reverse

from learning import selectors
from learning.config_table import config_rows
from learning.errors import InvalidInput
from learning.models import Evaluation
from tasks_app import selectors as job_selectors
from tasks_app.models import Job

MAX_RUNS = 8
"""More than this many columns is no longer a comparison anyone reads."""


@dataclass
class Run:
    key: str
    """``model-<id>`` or ``job-<id>``: stable across requests, used by the chart."""
    label: str
    url: str
    algorithm: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    evaluations: list[Evaluation]


@dataclass
class SettingRow:
    key: str
    values: list[str]
    differs: bool


@dataclass
class ScoreRow:
    target: str
    task_spec: str
    shots: int
    metric: str
    scores: list[Evaluation | None]


@dataclass
class Comparison:
    runs: list[Run]
    settings: list[SettingRow] = field(default_factory=list)
    scores: list[ScoreRow] = field(default_factory=list)

    @property
    def differing(self) -> list[SettingRow]:
        return [row for row in self.settings if row.differs]

    @property
    def same(self) -> list[SettingRow]:
        return [row for row in self.settings if not row.differs]

    def curves(self) -> list[dict[str, Any]]:
        """``[{"key", "label", "history"}]`` per run, for the chart's JSON."""
        return [{"key": r.key, "label": r.label, "history": r.history} for r in self.runs]


def _ids(values: Sequence[str], field_name: str) -> list[int]:
    try:
        ids = [int(v) for v in values if v != ""]
    except ValueError as exc:
        raise InvalidInput(
            f"{field_name} must be ids (whole numbers), got {list(values)}", field=field_name
        ) from exc
    return list(dict.fromkeys(ids))


def _model_run(user, pk: int) -> Run:
    try:
        model = selectors.metamodel_get(user=user, pk=pk)
    except Http404 as exc:  # a model the user may not see is one that does not exist
        raise InvalidInput(f"no model {pk}", field="model") from exc
    job = Job.objects.visible_to(user).that_trained(model).order_by("-pk").first()
    return Run(
        key=f"model-{model.pk}",
        label=model.name,
        url=reverse("model-detail", args=[model.pk]),
        algorithm=model.algorithm,
        config={k: v for k, v in model.hyperparameters.items() if k != "model_config"},
        history=list(job.history) if job is not None else [],
        evaluations=list(
            selectors.evaluation_list(user=user).filter(model=model).select_related("task_spec")
        ),
    )


def _job_run(user, pk: int) -> Run:
    try:
        job = job_selectors.job_get(user=user, pk=pk)
    except Http404 as exc:
        raise InvalidInput(f"no job {pk}", field="job") from exc
    if job.kind not in (Job.Kind.META_TRAIN, Job.Kind.TRANSFER):
        raise InvalidInput(
            f"job {pk} is an {job.get_kind_display().lower()} job, with nothing to compare", field="job"
        )
    visible = selectors.evaluation_list(user=user)
    return Run(
        key=f"job-{job.pk}",
        label=f"#{job.pk} {job.title}".strip(),
        url=reverse("job-detail", args=[job.pk]),
        algorithm=job.config["algorithm"],
        config=dict(job.config["engine"]),
        history=list(job.history),
        evaluations=list(
            visible.filter(pk__in=job.result_evaluations.values("pk")).select_related("task_spec")
        ),
    )


def comparison(*, user, model_ids: Sequence[str] = (), job_ids: Sequence[str] = ()) -> Comparison:
    """The runs named by ``model_ids`` then ``job_ids``, lined up; raises :class:`InvalidInput`
    for an id the user cannot see, a job with no training, or more than :data:`MAX_RUNS` runs."""
    models, jobs = _ids(model_ids, "model"), _ids(job_ids, "job")
    if len(models) + len(jobs) > MAX_RUNS:
        raise InvalidInput(
            f"compare at most {MAX_RUNS} runs at once, got {len(models) + len(jobs)}", field="model"
        )
    runs = [_model_run(user, pk) for pk in models] + [_job_run(user, pk) for pk in jobs]
    return Comparison(runs=runs, settings=_settings(runs), scores=_scores(user, runs))


def _settings(runs: list[Run]) -> list[SettingRow]:
    shown = [{row.key: row.full or row.value for row in config_rows(run.config)} for run in runs]
    keys = list(dict.fromkeys(key for values in shown for key in values))
    rows = [SettingRow(key, [values.get(key, "—") for values in shown], False) for key in keys]
    for row in rows:
        row.differs = len(set(row.values)) > 1
    return sorted(rows, key=lambda row: not row.differs)  # stable: the config's order within each part


def _scores(user, runs: list[Run]) -> list[ScoreRow]:
    rows: dict[tuple, ScoreRow] = {}
    for i, run in enumerate(runs):
        for e in run.evaluations:
            # A task spec may be private to someone else even where its evaluation is visible.
            spec = (
                f"{e.task_spec.name} (#{e.task_spec_id})"
                if e.task_spec and e.task_spec.is_visible_to(user)
                else "—"
            )
            key = (e.target_domain_id, e.task_spec_id, e.shots, e.metric)
            row = rows.setdefault(
                key, ScoreRow(e.target_domain.name, spec, e.shots, e.get_metric_display(), [None] * len(runs))
            )
            if row.scores[i] is None:  # the newest (evaluations come newest first)
                row.scores[i] = e
    return list(rows.values())
