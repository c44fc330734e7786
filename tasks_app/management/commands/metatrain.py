"""``python manage.py metatrain``: meta-train in the foreground (or ``--queue`` it) and register the model."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from learning.errors import InvalidInput
from tasks_app import services
from tasks_app.management.commands._console import ConsoleProgress
from tasks_app.models import Job


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


class Command(BaseCommand):
    help = "Meta-train a model on a catalog domain and register it with its meta-test evaluation."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--domain", required=True, help="Domain slug, e.g. digits.")
        parser.add_argument("--algorithm", required=True, help="protonet, maml, fomaml, reptile or siamese.")
        parser.add_argument("--task-spec", type=int, help="An existing task spec id (else one is made).")
        parser.add_argument("--n-way", type=int, default=5)
        parser.add_argument("--k-shot", type=int, default=1)
        parser.add_argument("--query", type=int, default=15)
        parser.add_argument("--within-group", action="store_true")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--hyperparameters", default="{}", help="JSON, e.g. '{\"steps\": 500}'.")
        parser.add_argument("--eval-episodes", type=int, default=600)
        parser.add_argument("--name", default="", help="Model name.")
        parser.add_argument("--private", action="store_true")
        parser.add_argument("--owner", help="Username (default: the first admin).")
        parser.add_argument(
            "--queue", action="store_true", help="Enqueue for a worker instead of running here."
        )

    def handle(self, *args, **opts) -> None:
        try:
            hyperparameters = json.loads(opts["hyperparameters"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--hyperparameters is not JSON: {exc}") from exc
        task = None
        if opts["task_spec"] is None:
            task = {
                "n_way": opts["n_way"],
                "k_shot": opts["k_shot"],
                "query_size": opts["query"],
                "within_group": opts["within_group"],
                "seed": opts["seed"],
            }
        try:
            job = services.job_create_meta_train(
                owner=owner_from(opts["owner"]),
                domain_slug=opts["domain"],
                algorithm=opts["algorithm"],
                hyperparameters=hyperparameters,
                task_spec_id=opts["task_spec"],
                task=task,
                model_name=opts["name"],
                eval_episodes=opts["eval_episodes"],
                visibility="private" if opts["private"] else "public",
                enqueue=opts["queue"],
            )
        except InvalidInput as err:
            raise CommandError(f"{err.field or 'input'}: {err.message}") from err
        if opts["queue"]:
            self.stdout.write(f"job {job.pk} queued on {job.queue}")
            return
        self.stdout.write(f"job {job.pk}: training in the foreground")
        services.job_run(job_id=job.pk, worker_host="cli", also_report=ConsoleProgress(self.stdout))
        report(self, job)
