"""Repository habits that CI enforces: ruff clean, migrations in step with the models."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command


def test_ruff_finds_nothing():
    # given the repository / when ruff lints and checks formatting / then it finds nothing
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=settings.BASE_DIR, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_migrations_match_the_models():
    # given the models / when makemigrations checks / then no migration is missing
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
