"""API authentication: tokens for scripts, sessions with CSRF for the browser, and the API root."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from learning.models import SourceDomain, TaskSpec

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture
def birds():
    classes = [{"name": f"c{i}", "group": "", "count": 20} for i in range(20)]
    return SourceDomain.objects.create(
        name="Birds",
        slug="birds",
        modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        origin=SourceDomain.Origin.UPLOAD,
        classes=classes,
        class_count=20,
    )


def test_token_endpoint_trades_credentials_for_a_token_that_authenticates(api_client, user, birds):
    # given ada's username and password
    credentials = {"username": "ada", "password": "pw-ada-123456"}

    # when a script asks for her token and writes with it
    token = api_client.post(TOKEN_URL, credentials, format="json").json()["token"]
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = script.post("/api/v1/task-specs/", {"domain": "birds", "n_way": 2}, format="json")

    # then the write is made as ada
    assert response.status_code == 201, response.json()
    assert TaskSpec.objects.get().owner == user
    assert response.json()["owner"] == "ada"


def test_token_endpoint_rejects_a_wrong_password(api_client, user):
    # given a wrong password

    # when a token is asked for
    response = api_client.post(TOKEN_URL, {"username": "ada", "password": "wrong"}, format="json")

    # then no token is given
    assert response.status_code == 400
    assert "token" not in response.json()


def test_a_bad_token_is_refused(birds):
    # given a client with a token that does not exist
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    # when it reads the catalog
    response = client.get("/api/v1/domains/")

    # then it is told its token is bad, rather than served as anonymous
    assert response.status_code == 401
    assert "token" in response.json()["detail"].lower()


def test_session_writes_need_the_csrf_token(user, birds):
    # given a browser logged in with a session, that sends no CSRF token
    browser = APIClient(enforce_csrf_checks=True)
    browser.login(username="ada", password="pw-ada-123456")

    # when it writes
    response = browser.post("/api/v1/task-specs/", {"domain": "birds", "n_way": 2}, format="json")

    # then the write is refused and nothing is written
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert TaskSpec.objects.count() == 0


def test_api_root_lists_the_resources(api_client):
    # given the API root

    # when it is read
    response = api_client.get("/api/v1/")

    # then it links every resource under /api/v1/ (not the pages of the same names)
    assert response.status_code == 200
    links = response.json()
    assert set(links) >= {"domains", "task-specs", "models", "evaluations", "jobs", "transfer-matrix"}
    assert links["domains"].endswith("/api/v1/domains/") and links["jobs"].endswith("/api/v1/jobs/")
    assert links["auth-token"].endswith("/api/v1/auth/token/")
    # and each link answers (jobs ask who is asking: 401 to an anonymous client)
    for key, url in links.items():
        status = api_client.get(url).status_code
        assert status == (401 if key == "jobs" else 405 if key == "auth-token" else 200), (key, status)


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("/api/v1/domains/nowhere/", "no domain nowhere"),
        ("/api/v1/task-specs/999/", "no task spec 999"),
        ("/api/v1/models/999/", "no model 999"),
        ("/api/v1/evaluations/999/", "no evaluation 999"),
        ("/api/v1/jobs/999/", "no job 999"),
    ],
)
def test_a_404_names_the_resource_not_the_class_behind_it(user_client, url, detail):
    # given a key that names nothing / when it is read
    response = user_client.get(url)
    # then the 404 says what was missing in the API's words
    assert response.status_code == 404
    assert response.json() == {"detail": detail}
