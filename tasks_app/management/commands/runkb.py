"""Run the whole MetaKB system on one machine: ``python manage.py runkb``.

It migrates, registers the built-in domains, starts the embedded Redis (unless
``REDIS_URL`` is set), then supervises the ASGI server (HTTP and websockets), one Celery
worker and the Celery beat that runs the watchdog. A child that dies is restarted with
backoff; jobs that a dead worker (or a previous run of this command) left running are
queued again at once and resume from their checkpoints. Ctrl-C (or SIGTERM) stops every
process it started, a running job saving a checkpoint first; data under ``var/`` (or in
the configured database) stays for the next start.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from kbsite import embedded
from tasks_app.runtime import jobs_requeue_lost, process_alive
from tasks_app.selectors import running_worker_hosts
from tasks_app.supervisor import Supervisor

STOP_GRACE_SECONDS = 20
"""How long a running job gets to save its checkpoint when the system stops."""


def _worker_node(pid: int) -> str:
    return f"runkb-{pid}@{socket.gethostname()}"


class Command(BaseCommand):
    help = "Migrate, then run and supervise the web server, a Celery worker and the watchdog schedule."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--concurrency", type=int, default=1, help="Worker processes (default 1).")

    def handle(self, *args, host: str, port: int, no_worker: bool, concurrency: int, **options) -> None:
        redis_owner = embedded.start_embedded_redis(settings.VAR_DIR) if settings.EMBEDDED_REDIS else None
        supervisor = Supervisor(say=self._say)
        stopping = False

        def request_stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("register_builtin_domains", verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            login_hint = self._ensure_admin()
            self._take_back_jobs_of_previous_runs()

            supervisor.start(
                "web server", ["-m", "kbsite.server", "-b", host, "-p", str(port), "kbsite.asgi:application"]
            )
            supervisor.start(
                "watchdog schedule",
                [
                    "-m",
                    "celery",
                    "-A",
                    "kbsite",
                    "beat",
                    "--loglevel",
                    "WARNING",
                    "--schedule",
                    str(embedded.var_path(settings.VAR_DIR, "celerybeat-schedule")),
                ],
            )
            if not no_worker:
                node = _worker_node(os.getpid())
                supervisor.start(
                    "worker",
                    [
                        *("-m", "celery", "-A", "kbsite", "worker", "-Q", "gpu,cpu"),
                        *("-c", str(concurrency), "-n", node, "--loglevel", "INFO"),
                        *("--without-gossip", "--without-mingle"),
                    ],
                    on_exit=lambda status: self._take_back_jobs(node, "its worker process died"),
                )
            self.stdout.write(self.style.SUCCESS(f"MetaKB is running at http://{host}:{port}/"))
            self.stdout.write(login_hint)
            self.stdout.write("Press Ctrl-C to stop.")
            self.stdout.flush()
            while not stopping:
                supervisor.poll()
                time.sleep(0.2)
        finally:
            supervisor.stop(grace_s=STOP_GRACE_SECONDS)
            embedded.stop_embedded_redis(redis_owner, save=True)
            self.stdout.write("MetaKB stopped.")

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _take_back_jobs(self, node: str, reason: str) -> None:
        ids = jobs_requeue_lost(worker_host=node, reason=f"{reason} ({node})")
        if ids:
            self._say(f"Jobs {', '.join(map(str, ids))} lost their worker; queued again to resume.")

    def _take_back_jobs_of_previous_runs(self) -> None:
        """Requeue jobs that a stopped or killed earlier run of this command left running here."""
        ours = re.compile(rf"^runkb-(\d+)@{re.escape(socket.gethostname())}$")
        for node in running_worker_hosts():
            match = ours.match(node)
            if match and not process_alive(int(match.group(1))):
                self._take_back_jobs(node, "the run command that ran it stopped")

    def _ensure_admin(self) -> str:
        """Create the first admin on the first start; its password is printed this once only."""
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return "Log in with your admin account (created on the first start)."
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username="admin", email="", password=password)
        return f"Log in at /accounts/login/ as 'admin' with password {password!r} (shown only this once)."
