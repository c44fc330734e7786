"""``manage.py import_domain PATH_OR_URL --name NAME``: import an image domain from a zip, folder or URL,
or a text domain from a CSV, TSV or JSON Lines file (its texts embedded here, with a progress line)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from learning.engine.progress import ProgressMeter
from learning.errors import InvalidInput
from learning.models import Visibility


class Command(BaseCommand):
    help = (
        "Import an image domain from a zip file, a folder or an http(s) URL of a zip: one folder per class "
        "(<class>/<image>), optionally grouped (<group>/<class>/<image>). Or a text domain from a .csv/.tsv "
        "with the columns text and label (and optionally group), or a .jsonl of {text, label, group}."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "source", help="A zip file, a folder, an http(s) URL of a zip, or a .csv/.tsv/.jsonl text file."
        )
        parser.add_argument("--name", required=True, help="The domain's name (its slug is made from it).")
        parser.add_argument("--owner", help="User name of the owner (default: no owner).")
        parser.add_argument("--private", action="store_true", help="Visible to the owner only.")
        parser.add_argument("--description", default="")
        parser.add_argument("--citation", default="")
        parser.add_argument("--license", default="")

    def handle(self, *args, source: str, name: str, owner: str | None, private: bool, **options) -> None:
        from learning.services.domains import domain_import

        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user named {owner!r}")
        if private and user is None:
            raise CommandError("a private domain needs an --owner")
        try:
            domain = domain_import(
                source=source,
                name=name,
                owner=user,
                visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
                description=options["description"],
                citation=options["citation"],
                license=options["license"],
                on_progress=self._progress(),
            )
        except InvalidInput as err:
            raise CommandError(err.message) from err
        self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(f"Imported {domain.name!r} as {domain.slug}: ")
            + f"{domain.class_count} classes, {len(domain.class_groups)} groups, "
            f"{domain.example_count} {'texts' if domain.is_text else 'images'}, "
            f"sha256 {domain.content_sha256}"
        )

    def _progress(self) -> Callable[[int, int], None]:
        """``on_progress(done, total)``: one line of the files decoded or texts embedded, with an ETA."""
        meter: ProgressMeter | None = None

        def on_progress(done: int, total: int) -> None:
            nonlocal meter
            meter = meter or ProgressMeter(total, done=done)
            eta = meter.eta_seconds(done, time.monotonic())
            self.stdout.write(
                f"\r{done:,}/{total:,}" + ("" if eta is None else f"  ETA {eta:.0f} s"), ending=""
            )
            self.stdout.flush()

        return on_progress
