"""``python manage.py metatrain``: meta-train in the foreground (or ``--queue`` it) and register the model."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from learning.algorithms import meta_train_algorithms
from learning.errors import InvalidInput
from tasks_app import runtime, services
from tasks_app.management.commands._shared import ConsoleProgress, json_option, owner_from, report


class Command(BaseCommand):
    help = "Meta-train a model on a catalog domain and register it with its meta-test evaluation."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--domain", required=True, help="Domain slug, e.g. digits.")
        parser.add_argument(
            "--algorithm",
            required=True,
            help="One of: " + ", ".join(dict.fromkeys(e.name for e in meta_train_algorithms())) + ".",
        )
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
        hyperparameters = json_option(opts["hyperparameters"], "--hyperparameters")
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
        runtime.job_run(job_id=job.pk, worker_host="cli", also_report=ConsoleProgress(self.stdout))
        report(self, job)
