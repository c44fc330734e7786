"""Run the whole MetaKB system on one machine: ``python manage.py runkb``.

It migrates, registers the built-in domains, starts the embedded Redis (unless
``REDIS_URL`` is set), the ASGI server (HTTP and websockets) and one Celery worker,
then waits. Ctrl-C (or SIGTERM) stops every process it started; data under ``var/``
(or in the configured database) stays for the next start.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from kbsite import embedded

STOP_GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Migrate, then run the web server, the websocket endpoints and a Celery worker together."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--concurrency", type=int, default=1, help="Worker processes (default 1).")

    def handle(self, *args, host: str, port: int, no_worker: bool, concurrency: int, **options) -> None:
        redis_owner = embedded.start_embedded_redis(settings.VAR_DIR) if settings.EMBEDDED_REDIS else None
        children: list[subprocess.Popen] = []
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

            children.append(
                self._spawn(["-m", "daphne", "-b", host, "-p", str(port), "kbsite.asgi:application"])
            )
            if not no_worker:
                children.append(
                    self._spawn(
                        [
                            "-m",
                            "celery",
                            "-A",
                            "kbsite",
                            "worker",
                            "-Q",
                            "gpu,cpu",
                            "-c",
                            str(concurrency),
                            "--loglevel",
                            "INFO",
                            "-n",
                            f"runkb-{os.getpid()}@%h",
                        ]
                    )
                )
            self.stdout.write(self.style.SUCCESS(f"MetaKB is running at http://{host}:{port}/"))
            self.stdout.write(login_hint)
            self.stdout.write("Press Ctrl-C to stop.")
            self.stdout.flush()
            while not stopping:
                for child in children:
                    if child.poll() is not None:
                        raise CommandError(f"{child.args[2]} exited with status {child.returncode}; stopping")
                time.sleep(0.2)
        finally:
            self._stop(children)
            embedded.stop_embedded_redis(redis_owner, save=True)
            self.stdout.write("MetaKB stopped.")

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        # Children run in their own process group so that Ctrl-C reaches only this command,
        # which then stops them in order instead of racing them.
        return subprocess.Popen([sys.executable, *args], env=os.environ.copy(), start_new_session=True)

    def _stop(self, children: list[subprocess.Popen]) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _ensure_admin(self) -> str:
        """Create the first admin on the first start; its password is printed this once only."""
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return "Log in with your admin account (created on the first start)."
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username="admin", email="", password=password)
        return f"Log in at /accounts/login/ as 'admin' with password {password!r} (shown only this once)."
