"""What it takes to run a job again: the launch form pre-filled, its settings, the command.

``job_rerun`` reads a finished (or running) meta-training or transfer job and returns
the settings its owner chose, meaning the engine config without what the site fills in
(the task, the split) and without the algorithm's defaults. It returns them three ways:
as the launch form's initial values, as ``hyperparameters`` JSON, and as the management
command that launches the same job from a shell. The task spec is reused by id, so the
episodes are the same.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from learning.algorithms import SITE_SET
from learning.config_table import engine_defaults
from tasks_app.models import Job


@dataclass(frozen=True)
class Rerun:
    job_id: int
    """The job to run again."""
    kind: str
    """``meta_train`` or ``transfer``: which form launches it."""
    initial: dict[str, Any]
    """The launch form's initial values."""
    hyperparameters: dict[str, Any]
    """The settings that differ from the algorithm's defaults (nested sections kept)."""
    off_form: list[str]
    """Dotted names of those settings that the form has no field for (the API and command take them)."""
    command: str
    """The shell command that launches the same job."""


RERUNNABLE = (Job.Kind.META_TRAIN, Job.Kind.TRANSFER)


def job_rerun(job: Job, form_fields: set[str] | frozenset[str] = frozenset()) -> Rerun | None:
    """How to launch ``job`` again (None for kinds that are not launched from a form: imports, evaluations).

    ``form_fields`` names the launch form's setting fields; the others land in ``off_form``.
    """
    if job.kind not in RERUNNABLE:
        return None
    engine, algorithm = job.config["engine"], job.config["algorithm"]
    site_set = SITE_SET["transfer" if job.kind == Job.Kind.TRANSFER else "meta_train"]
    chosen = {k: v for k, v in engine.items() if k not in site_set}
    hyperparameters = _changed(chosen, engine_defaults(algorithm, engine.get("domain", "image")))
    # Every setting the form has, defaults too: its own initial values are a first job's, not these.
    on_form = {k: v for k, v in chosen.items() if k in form_fields and not isinstance(v, dict)}
    off_form = sorted(_dotted(hyperparameters.keys() - on_form.keys(), hyperparameters))
    common = {
        "task_spec": str(job.task_spec_id),
        "eval_episodes": job.config["eval_episodes"],
        "model_name": job.config["model_name"],
        **on_form,
    }
    hp_json = json.dumps(hyperparameters, separators=(",", ":"))
    if job.kind == Job.Kind.TRANSFER:
        initial = {"source_model": str(job.source_model_id), "domain": job.domain.slug, "method": algorithm}
        args = ["transfer", "--source-model", str(job.source_model_id), "--target", job.domain.slug]
        args += ["--method", algorithm]
    else:
        initial = {"domain": job.domain.slug, "algorithm": algorithm}
        args = ["metatrain", "--domain", job.domain.slug, "--algorithm", algorithm]
    args += ["--task-spec", str(job.task_spec_id), "--hyperparameters", hp_json]
    args += ["--eval-episodes", str(job.config["eval_episodes"]), "--name", job.config["model_name"]]
    if job.owner is not None:
        args += ["--owner", job.owner.get_username()]
    if job.kind == Job.Kind.META_TRAIN and job.config["visibility"] == "private":
        args.append("--private")
    return Rerun(
        job_id=job.pk,
        kind=job.kind,
        initial={**initial, **common},
        hyperparameters=hyperparameters,
        off_form=off_form,
        command=shlex.join([".venv/bin/python", "manage.py", *args]),
    )


def _changed(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``config`` that differ from ``defaults``, sections compared key by key."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            inner = _changed(value, default)
            if inner:
                out[key] = inner
        elif key not in defaults or value != default:
            out[key] = value
    return out


def _dotted(keys: set[str], config: dict[str, Any]) -> list[str]:
    names = []
    for key in keys:
        value = config[key]
        names += [f"{key}.{k}" for k in value] if isinstance(value, dict) else [key]
    return names
