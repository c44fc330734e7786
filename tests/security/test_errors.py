"""Error handling that tells a stranger nothing: no tracebacks, JSON from the API, 400s for hostile bodies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tasks_app.models import Job
from tests.learning.test_predict_api import register

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SECRET = "internal-detail-4f2a"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("target", ["jobs", "predict"])
def test_json_nested_past_the_recursion_limit_is_a_json_400(user_client, target):
    # given a public CNP and a body of 50,000 nested lists
    path = (
        "/api/v1/jobs/" if target == "jobs" else f"/api/v1/models/{register('cnp', 'function').pk}/predict/"
    )
    # when posted
    response = user_client.post(path, _nested(50_000), content_type="application/json")
    # then a 400 in JSON that says why, and no job was written
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"].startswith("application/json")
    assert "nested too deeply" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_a_json_body_over_the_upload_limit_is_a_json_refusal(user_client, settings):
    # given an 11 MB JSON body, past DATA_UPLOAD_MAX_MEMORY_SIZE (10 MiB)
    body = json.dumps({"domain": "digits", "algorithm": "protonet", "model_name": "x" * 11_000_000})
    # when posted / then refused in JSON, not with an HTML page, and nothing written
    response = user_client.post("/api/v1/jobs/", body, content_type="application/json")
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_an_unexpected_api_error_is_a_plain_json_500(user, monkeypatch):
    # given a read that fails inside an API view
    def broken(**_):
        raise RuntimeError(SECRET)

    monkeypatch.setattr("tasks_app.selectors.job_list", broken)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    # when the API is asked / then JSON, status 500, and nothing of the error's text
    response = client.get("/api/v1/jobs/")
    assert response.status_code == 500
    assert response.json() == {"detail": "A server error occurred; it has been logged."}
    assert SECRET.encode() not in response.content


def test_an_unexpected_page_error_is_a_plain_page_without_a_traceback(monkeypatch):
    def broken(**_):
        raise RuntimeError(SECRET)

    monkeypatch.setattr("learning.selectors.catalog_counts", broken)
    response = Client(raise_request_exception=False).get("/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body
    assert SECRET not in body and "Traceback" not in body


def test_debug_is_off_unless_asked_for():
    # given the settings as `make run` loads them, with no DEBUG in the environment
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='kbsite.settings'; django.setup();"
    code += "from django.conf import settings; print(settings.DEBUG)"
    # when read in a fresh interpreter / then DEBUG is off, and DEBUG=1 turns it on
    off = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    on = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**env, "DEBUG": "1"}, capture_output=True, text=True
    )
    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True"), off.stderr[-500:]


def test_unknown_fields_of_a_job_request_are_refused_by_name(user_client):
    body = {"domain": "digits", "algorithm": "protonet", "steps": "many"}
    response = user_client.post("/api/v1/jobs/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()) == ["steps"] and response.json()["steps"][0].startswith("unknown field")
    assert Job.objects.count() == 0


def test_a_model_s_weights_file_is_named_by_its_content_not_by_user_fields(user_client, artifacts_in_tmp):
    # given real weights uploaded under an algorithm name that looks like a path
    from django.core.files.uploadedfile import SimpleUploadedFile

    from learning.engine.weights import weights_to_bytes
    from tests.engine.test_predict import tiny_model

    result = tiny_model("protonet")
    blob = weights_to_bytes(result.weights, result.model_config, result.algorithm)
    weights = SimpleUploadedFile("w.safetensors", blob, "application/octet-stream")
    body = {"name": "m", "algorithm": "a/b/c", "architecture": "conv4", "weights": weights}
    response = user_client.post("/api/v1/models/", body, format="multipart")
    # then whatever the answer, the stored files sit directly in models/, named by their hash
    made = sorted(
        p.relative_to(artifacts_in_tmp).as_posix() for p in artifacts_in_tmp.rglob("*") if p.is_file()
    )
    assert all(re.fullmatch(r"models/[0-9a-f]{32}\.safetensors", name) for name in made), (
        response.status_code,
        made,
    )
