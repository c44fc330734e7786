"""Rate limits: password guessing on the token endpoint and the log-in form, predictions and job
launches answer 429 with Retry-After once a client is over its rate, on the real endpoints."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from learning.services.domains import builtin_domains_register
from learning.throttles import LiveRateMixin
from tasks_app.models import Job

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
RIGHT = {"username": "ada", "password": "pw-ada-123456"}
WRONG = {"username": "ada", "password": "wrong"}


@pytest.fixture(autouse=True)
def empty_counts():
    """Every test starts and ends with no requests counted (the suite shares one cache)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def rates(settings):
    """Set the rate limits for one test (the suite itself runs with generous ones)."""

    def set_rates(**scopes: str) -> None:
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**current, **scopes},
        }

    return set_rates


@pytest.fixture
def clock(monkeypatch):
    """The throttles' clock, moved by hand."""
    now = [1_000_000.0]
    monkeypatch.setattr(LiveRateMixin, "timer", staticmethod(lambda: now[0]), raising=False)
    return now


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    assert 1 <= int(response["Retry-After"]) <= 60


# --- The token endpoint -------------------------------------------------------------------------


def test_wrong_passwords_on_the_token_endpoint_end_in_429_and_then_even_the_right_one_is_refused(
    api_client, user, rates
):
    # given a limit of 3 token requests a minute per address
    rates(auth="3/min")

    # when 4 wrong passwords come from one address, then the right one
    answers = [api_client.post(TOKEN_URL, WRONG, format="json") for _ in range(4)]
    right = api_client.post(TOKEN_URL, RIGHT, format="json")

    # then the first 3 are checked (400) and the rest are refused unchecked, with Retry-After
    assert [a.status_code for a in answers[:3]] == [400, 400, 400]
    assert_throttled(answers[3])
    assert_throttled(right)
    assert "token" not in right.json()


def test_a_forged_forwarded_for_header_does_not_escape_the_token_limit(api_client, user, rates):
    # given an address that has used up its token requests
    rates(auth="2/min")
    for _ in range(2):
        api_client.post(TOKEN_URL, WRONG, format="json")

    # when it claims another address in X-Forwarded-For
    response = api_client.post(TOKEN_URL, WRONG, format="json", HTTP_X_FORWARDED_FOR="203.0.113.7")

    # then it is still counted as itself, while a really different address gets its token
    assert_throttled(response)
    other = APIClient(REMOTE_ADDR="198.51.100.4").post(TOKEN_URL, RIGHT, format="json")
    assert other.status_code == 200
    assert other.json()["token"]


def test_the_token_limit_lifts_when_its_period_has_passed(api_client, user, rates, clock):
    # given an address refused for too many wrong passwords
    rates(auth="2/min")
    for _ in range(2):
        api_client.post(TOKEN_URL, WRONG, format="json")
    assert_throttled(api_client.post(TOKEN_URL, RIGHT, format="json"))

    # when the minute has passed
    clock[0] += 61

    # then the right password gets the token
    response = api_client.post(TOKEN_URL, RIGHT, format="json")
    assert response.status_code == 200
    assert response.json()["token"]


# --- The log-in form -----------------------------------------------------------------------------


def _logged_in(client) -> bool:
    return client.get(reverse("home")).context["user"].is_authenticated


def test_failed_log_ins_on_the_form_end_in_429_and_then_even_the_right_password_is_refused(
    client, user, rates
):
    # given a limit of 3 failed log-ins a minute per address
    rates(auth="3/min")

    # when 3 wrong passwords come from one address, then the right one
    failures = [client.post(reverse("login"), WRONG) for _ in range(3)]
    right = client.post(reverse("login"), RIGHT)

    # then the failures are checked and shown, and the right password is refused unchecked
    assert [f.status_code for f in failures] == [200, 200, 200]
    assert_throttled(right)
    assert b"Too many failed log-ins" in right.content
    assert b'name="username"' in right.content  # the form is still there to try again later
    assert not _logged_in(client)
    # and the page itself still opens
    assert client.get(reverse("login")).status_code == 200


def test_successful_log_ins_are_not_counted_as_failures(client, user, rates):
    # given a limit of 2 failed log-ins a minute
    rates(auth="2/min")

    # when ada logs in and out 4 times, then mistypes once
    for _ in range(4):
        assert client.post(reverse("login"), RIGHT).status_code == 302
        client.post(reverse("logout"))
    mistyped = client.post(reverse("login"), WRONG)

    # then the mistake is still checked and answered with the form's message
    assert mistyped.status_code == 200
    assert b"Too many" not in mistyped.content


def test_the_form_limit_lifts_when_its_period_has_passed(client, user, rates, clock):
    # given an address refused for too many failed log-ins
    rates(auth="2/min")
    for _ in range(2):
        client.post(reverse("login"), WRONG)
    assert_throttled(client.post(reverse("login"), RIGHT))

    # when the minute has passed / then the right password logs in
    clock[0] += 61
    assert client.post(reverse("login"), RIGHT).status_code == 302
    assert _logged_in(client)


# --- Predictions ---------------------------------------------------------------------------------


def test_anonymous_predictions_are_limited_before_a_users(api_client, user_client, rates):
    # given stricter limits for anonymous clients than for signed-in users (the throttle comes
    # before the model is looked up, so guessing at ids is counted too)
    rates(predict_anon="2/min", predict_user="4/min")
    url = "/api/v1/models/999999/predict/"

    # when an anonymous client and a user at the same address each ask 5 times
    anonymous = [api_client.post(url, {}, format="json") for _ in range(5)]
    signed_in = [user_client.post(url, {}, format="json") for _ in range(5)]

    # then the anonymous client is refused after 2, the user after 4
    assert [a.status_code for a in anonymous[:2]] == [404, 404]
    for answer in anonymous[2:]:
        assert_throttled(answer)
    assert [a.status_code for a in signed_in[:4]] == [404, 404, 404, 404]
    assert_throttled(signed_in[4])


def test_each_user_has_a_prediction_limit_of_their_own(user_client, stranger_client, rates):
    # given a user who has used up their predictions
    rates(predict_user="1/min")
    url = "/api/v1/models/999999/predict/"
    user_client.post(url, {}, format="json")
    assert_throttled(user_client.post(url, {}, format="json"))

    # when another user at the same address asks / then they are answered
    assert stranger_client.post(url, {}, format="json").status_code == 404


@pytest.mark.slow
def test_real_predictions_are_answered_until_the_limit(api_client, rates):
    # given a public regression model (trained for a few steps) and 2 anonymous predictions a minute
    from tests.learning.test_predict_api import points, register, url

    model = register("cnp", "function")
    rates(predict_anon="2/min")

    # when an anonymous client asks 3 times
    answers = [api_client.post(url(model), points(), content_type="application/json") for _ in range(3)]

    # then 2 predictions come back and the third is refused
    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert len(answers[0].json()["predictions"]) == 2
    assert_throttled(answers[2])


# --- Job launches --------------------------------------------------------------------------------

LAUNCH = {
    "domain": "digits",
    "algorithm": "protonet",
    "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
    "hyperparameters": {"steps": 20, "meta_batch": 2},
}


def test_job_launches_are_limited_per_user_and_reading_jobs_is_not(user_client, stranger_client, rates):
    # given the digits domain and 2 launches a minute per user
    builtin_domains_register()
    rates(jobs="2/min")

    # when a user launches 3 jobs
    answers = [user_client.post("/api/v1/jobs/", LAUNCH, format="json") for _ in range(3)]

    # then 2 are queued and the third is refused and creates nothing
    assert [a.status_code for a in answers[:2]] == [201, 201]
    assert_throttled(answers[2])
    assert Job.objects.count() == 2
    # and they can still read their jobs, while another user can still launch
    assert user_client.get("/api/v1/jobs/").status_code == 200
    assert stranger_client.post("/api/v1/jobs/", LAUNCH, format="json").status_code == 201
