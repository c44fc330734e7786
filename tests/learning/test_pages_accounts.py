"""Sign-up, log-in and log-out through the pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """A cheap hasher: these tests check the flow, not password storage (autouse runs before ``user``)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _logged_in_as(client) -> str | None:
    user = client.get(reverse("home")).context["user"]
    return user.get_username() if user.is_authenticated else None


def test_sign_up_creates_the_account_and_logs_in(client):
    # given an anonymous visitor on the sign-up page
    assert client.get(reverse("signup")).status_code == 200

    # when they sign up
    response = client.post(
        reverse("signup"),
        {"username": "grace", "password1": "a-long-Passphrase-42", "password2": "a-long-Passphrase-42"},
    )

    # then the account exists, they land home, logged in
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert get_user_model().objects.filter(username="grace").exists()
    assert _logged_in_as(client) == "grace"


def test_sign_up_with_mismatched_passwords_shows_the_error_and_creates_nothing(client):
    # when the two passwords differ
    response = client.post(
        reverse("signup"),
        {"username": "grace", "password1": "a-long-Passphrase-42", "password2": "another-Passphrase-43"},
    )

    # then the form comes back with the error beside the field, and no account is made
    assert response.status_code == 400
    assert response.context["form"].errors["password2"]
    assert 'class="error"' in response.content.decode()
    assert not get_user_model().objects.filter(username="grace").exists()
    assert _logged_in_as(client) is None


def test_log_in_and_log_out(client, user):
    # given a user with a password
    # when they log in through the form
    response = client.post(reverse("login"), {"username": "ada", "password": "pw-ada-123456"})

    # then they are logged in and sent home, where the header names them
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert _logged_in_as(client) == "ada"
    assert "Signed in as <strong>ada</strong>" in client.get(reverse("home")).content.decode()

    # when they log out with a POST
    response = client.post(reverse("logout"))

    # then they are anonymous again
    assert response.status_code == 302
    assert _logged_in_as(client) is None


def test_log_in_with_a_wrong_password_is_refused(client, user):
    # when the password is wrong
    response = client.post(reverse("login"), {"username": "ada", "password": "wrong"})

    # then the page says so and nobody is logged in
    assert response.status_code == 200
    assert "form-errors" in response.content.decode()
    assert _logged_in_as(client) is None


def test_log_out_by_get_is_not_allowed(client, user):
    # given a logged-in user
    client.force_login(user)

    # when a link (GET) tries to log them out
    response = client.get(reverse("logout"))

    # then it is refused and they stay logged in
    assert response.status_code == 405
    assert _logged_in_as(client) == "ada"


def test_log_in_returns_to_the_page_asked_for(client, user):
    # given an anonymous visitor sent to log in from the upload page
    response = client.get(reverse("domain-upload"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")

    # when they log in with that next
    response = client.post(
        reverse("login") + "?next=/domains/new/",
        {"username": "ada", "password": "pw-ada-123456", "next": "/domains/new/"},
    )

    # then they go back to the upload page
    assert response["Location"] == "/domains/new/"
