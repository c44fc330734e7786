"""The engine stays plain Python: no Django, Celery, Channels, DRF or tasks_app imports anywhere in it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "learning" / "engine"
FORBIDDEN_ROOTS = {"django", "celery", "channels", "channels_redis", "rest_framework", "tasks_app", "kbsite"}


def forbidden_imports(source: str) -> list[str]:
    """Modules imported by ``source`` that the engine may not use (incl. non-engine ``learning.*``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            outside_engine = root == "learning" and not (
                name == "learning.engine" or name.startswith("learning.engine.")
            )
            if root in FORBIDDEN_ROOTS or outside_engine:
                found.append(name)
    return found


def test_the_scanner_catches_every_kind_of_forbidden_import():
    # given sources with direct, from- and nested imports / when scanned / then each one is reported
    source = (
        "import django.db\n"
        "from celery import shared_task\n"
        "def f():\n    from channels.layers import get_channel_layer\n"
        "import rest_framework as rf\nfrom tasks_app import models\nfrom learning.models import MetaModel\n"
        "from learning.engine.nets import Conv4\nimport torch\n"
    )
    assert sorted(forbidden_imports(source)) == sorted(
        ["django.db", "celery", "channels.layers", "rest_framework", "tasks_app", "learning.models"]
    )


def test_no_engine_module_imports_django_celery_channels_or_tasks_app():
    # given every .py under learning/engine
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) >= 10
    # when each is scanned / then none imports a forbidden module
    offenders = {str(f.relative_to(ENGINE)): bad for f in files if (bad := forbidden_imports(f.read_text()))}
    assert offenders == {}


@pytest.mark.slow
def test_importing_the_whole_engine_loads_no_django():
    # given a fresh interpreter / when every engine module is imported / then no forbidden package got loaded
    modules = sorted(
        ".".join(("learning", "engine", *f.relative_to(ENGINE).with_suffix("").parts))
        for f in ENGINE.rglob("*.py")
        if f.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN_ROOTS)!r})\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    root = ENGINE.parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
