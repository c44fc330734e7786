"""``python manage.py evaluate``: evaluate a catalog model on a task spec's meta-test classes."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from learning.errors import InvalidInput
from tasks_app import runtime, services
from tasks_app.management.commands._shared import owner_from, report


class Command(BaseCommand):
    help = "Evaluate a model over at least 600 meta-test episodes and record the result in the catalog."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", type=int, required=True, help="Model id.")
        parser.add_argument("--task-spec", type=int, help="Task spec id (default: the model's own).")
        parser.add_argument("--episodes", type=int, default=600)
        parser.add_argument("--owner", help="Username (default: the first admin).")
        parser.add_argument(
            "--queue", action="store_true", help="Enqueue for a worker instead of running here."
        )

    def handle(self, *args, **opts) -> None:
        try:
            job = services.job_create_evaluate(
                owner=owner_from(opts["owner"]),
                model_id=opts["model"],
                task_spec_id=opts["task_spec"],
                episodes=opts["episodes"],
                enqueue=opts["queue"],
            )
        except InvalidInput as err:
            raise CommandError(f"{err.field or 'input'}: {err.message}") from err
        if opts["queue"]:
            self.stdout.write(f"job {job.pk} queued on {job.queue}")
            return
        runtime.job_run(job_id=job.pk, worker_host="cli")
        report(self, job)
