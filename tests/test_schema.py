"""The OpenAPI schema generates cleanly, and the interactive docs work offline."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_generates_and_validates_with_no_warnings(tmp_path):
    # given the API as routed
    target = tmp_path / "schema.yml"

    # when the schema is generated, validated, and any warning treated as an error
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    # then it is an OpenAPI 3 document covering every resource and the token endpoint
    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")
    for path in ("domains/", "domains/{slug}/", "task-specs/", "models/", "models/{id}/", "evaluations/"):
        assert f"/api/v1/{path}" in schema["paths"]
    assert "post" in schema["paths"]["/api/v1/auth/token/"]
    upload = schema["paths"]["/api/v1/models/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["$ref"].endswith("/MetaModelRegister")
    assert schema["components"]["schemas"]["MetaModelRegister"]["properties"]["weights"]["format"] == "binary"

    # and every operation is tagged by resource (none falls into "v1"); the jobs' say what they do
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "v1" not in operation["tags"], f"{method} {path}"
            if path.startswith("/api/v1/jobs/"):
                assert operation.get("summary"), f"{method} {path} has no summary"
    assert schema["paths"]["/api/v1/jobs/"]["post"]["tags"] == ["jobs"]


def test_schema_endpoint_serves_the_schema(client):
    # given the schema URL

    # when it is fetched as JSON
    response = client.get("/api/schema/", {"format": "json"})

    # then it is the OpenAPI document
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "MetaKB API"


def test_docs_page_loads_only_local_assets(client):
    # given the interactive docs page
    response = client.get("/api/docs/")
    html = response.content.decode()

    # when its scripts, styles and icons are collected
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)

    # then there are some, all under /static/, none from another host, and each is served
    assert response.status_code == 200
    assert any(asset.endswith(".js") for asset in assets)
    assert not re.search(r"https?://", html.replace("http://testserver", ""))
    for asset in assets:
        assert asset.startswith("/static/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        if hasattr(served, "close"):
            served.close()
