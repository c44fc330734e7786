"""What the job commands share: the owner lookup, JSON options, a progress bar and the report."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tasks_app.models import Job


class ConsoleProgress:
    """Draws ``[#####-----] step/total loss ETA`` on one terminal line, from engine progress events."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stdout
        self.width = width

    def __call__(self, event: dict[str, Any]) -> None:
        step, total = event["step"], max(1, event["total"])
        filled = int(self.width * step / total)
        loss = event.get("loss")
        eta = event.get("eta_seconds")
        parts = [f"[{'#' * filled}{'-' * (self.width - filled)}] {step}/{total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s")
        self.stream.write("\r" + "  ".join(parts))
        if step >= total:
            self.stream.write("\n")
        self.stream.flush()


def owner_from(username: str | None):
    users = get_user_model()
    if username:
        try:
            return users.objects.get(username=username)
        except users.DoesNotExist as exc:
            raise CommandError(f"no user {username!r}") from exc
    owner = users.objects.filter(is_superuser=True).order_by("pk").first()
    if owner is None:
        raise CommandError("no admin user exists yet; pass --owner USERNAME")
    return owner


def report(command: BaseCommand, job: Job) -> None:
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(f"job {job.pk} {job.status}: {job.error_summary}")
    for evaluation in job.result_evaluations.order_by("shots", "metric"):
        line = (
            f"{evaluation.shots}-shot {evaluation.metric}: {evaluation.mean:.4f} ± {evaluation.ci95:.4f} "
            f"(95% CI, {evaluation.episodes} episodes)"
        )
        if evaluation.gain is not None:
            line += f"; from scratch {evaluation.baseline_mean:.4f}, gain {evaluation.gain:+.4f}"
            line += f" ± {evaluation.gain_ci95:.4f}" if evaluation.gain_ci95 is not None else ""
            line += " NEGATIVE TRANSFER" if evaluation.negative_transfer else ""
        command.stdout.write(line)
    command.stdout.write(command.style.SUCCESS(f"job {job.pk} succeeded; model {job.result_model_id}"))


def json_option(value: str, name: str) -> dict:
    """A command-line option holding a JSON object, or a CommandError naming the option."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise CommandError(f"{name} must be a JSON object, got {value!r}")
    return parsed
