"""``python manage.py transfer``: transfer a catalog model to a target domain and measure the gain."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from learning.errors import InvalidInput
from tasks_app import runtime, services
from tasks_app.management.commands._shared import ConsoleProgress, json_option, owner_from, report


class Command(BaseCommand):
    help = "Transfer a model to a target domain; compare it with training from scratch on identical episodes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--source-model", type=int, required=True, help="Model id.")
        parser.add_argument("--target", required=True, help="Target domain slug.")
        parser.add_argument("--method", required=True, help="finetune, feature, instance or rkd.")
        parser.add_argument("--task-spec", type=int, help="A task spec of the target (else one is made).")
        parser.add_argument("--n-way", type=int, default=5)
        parser.add_argument("--query", type=int, default=15)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--hyperparameters", default="{}", help="JSON, e.g. '{\"steps\": 300}'.")
        parser.add_argument("--eval-episodes", type=int, default=600)
        parser.add_argument("--name", default="")
        parser.add_argument("--owner", help="Username (default: the first admin).")
        parser.add_argument(
            "--queue", action="store_true", help="Enqueue for a worker instead of running here."
        )

    def handle(self, *args, **opts) -> None:
        hyperparameters = json_option(opts["hyperparameters"], "--hyperparameters")
        task = None
        if opts["task_spec"] is None:
            task = {"n_way": opts["n_way"], "k_shot": 1, "query_size": opts["query"], "seed": opts["seed"]}
        try:
            job = services.job_create_transfer(
                owner=owner_from(opts["owner"]),
                source_model_id=opts["source_model"],
                target_domain_slug=opts["target"],
                method=opts["method"],
                hyperparameters=hyperparameters,
                task_spec_id=opts["task_spec"],
                task=task,
                eval_episodes=opts["eval_episodes"],
                model_name=opts["name"],
                enqueue=opts["queue"],
            )
        except InvalidInput as err:
            raise CommandError(f"{err.field or 'input'}: {err.message}") from err
        if opts["queue"]:
            self.stdout.write(f"job {job.pk} queued on {job.queue}")
            return
        runtime.job_run(job_id=job.pk, worker_host="cli", also_report=ConsoleProgress(self.stdout))
        report(self, job)
