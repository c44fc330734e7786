"""``manage.py register_builtin_domains``: add sinusoid, gp-1d and digits to the catalog (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from learning.models import SourceDomain


class Command(BaseCommand):
    help = "Add the built-in domains (sinusoid, gp-1d, digits); those already present are left as they are."

    def handle(self, *args, **options) -> None:
        from learning.services.domains import builtin_domains_register

        before = set(SourceDomain.objects.values_list("pk", flat=True))
        for domain in builtin_domains_register():
            state = "present" if domain.pk in before else "added"
            detail = (
                f"{domain.class_count} classes, {domain.example_count} images"
                if domain.is_image
                else f"generator {domain.generator['family']}"
            )
            self.stdout.write(f"{state}: {domain.slug} ({detail})")
