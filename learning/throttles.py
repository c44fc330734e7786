"""Rate limits: password guessing (token endpoint and log-in form), predictions and job launches.

The limits are DRF throttles; their rates are ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``,
read when a request comes (DRF's own classes read them once, at import), so a changed
setting takes effect at once. The counts live in Django's default cache (``CACHE_URL``):
memory of the one web process unless a shared cache is configured. Every refusal is a
429 with ``Retry-After``.

- ``auth``: requests to ``/api/v1/auth/token/`` per client address, right password or
  not, and failed log-ins on the form per client address (a count of its own, at the
  same rate). While an address is over the limit even the right password is refused.
- ``predict_anon`` / ``predict_user``: predictions per address for anonymous clients, per
  user for signed-in ones.
- ``jobs``: job launches (``POST /api/v1/jobs/``) per user.
"""

from __future__ import annotations

import math

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle


class LiveRateMixin:
    """The rate of ``scope`` as the settings give it now; a wait of at least one second."""

    scope: str
    duration: int

    def get_rate(self) -> str | None:
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError as exc:
            raise ImproperlyConfigured(f"No throttle rate set for the {self.scope!r} scope") from exc

    def wait(self) -> float:
        # DRF gives no wait (hence no Retry-After) when the history is longer than the rate
        # allows, e.g. just after the rate was lowered: then the whole period is the answer.
        wait = super().wait()
        return max(1.0, wait) if wait is not None else float(self.duration)


class AuthRateThrottle(LiveRateMixin, SimpleRateThrottle):
    """Every request per client address, signed in or not (``auth`` scope)."""

    scope = "auth"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PredictAnonThrottle(LiveRateMixin, AnonRateThrottle):
    """Anonymous predictions per client address (``predict_anon`` scope)."""

    scope = "predict_anon"


class PredictUserThrottle(LiveRateMixin, UserRateThrottle):
    """Signed-in predictions per user (``predict_user`` scope); anonymous ones are left to the other."""

    scope = "predict_user"

    def get_cache_key(self, request, view) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return super().get_cache_key(request, view)


class JobCreateThrottle(LiveRateMixin, UserRateThrottle):
    """Job launches per user (``jobs`` scope); reading and cancelling jobs are not counted."""

    scope = "jobs"

    def allow_request(self, request, view) -> bool:
        if getattr(view, "action", None) != "create":
            return True
        return super().allow_request(request, view)


class LoginFailureThrottle(AuthRateThrottle):
    """Failed log-ins on the form per client address, at the ``auth`` rate, in a count of their own."""

    cache_format = "throttle_login_failures_%(scope)s_%(ident)s"

    def retry_after(self, request: HttpRequest) -> int | None:
        """Seconds until this address may try again, or ``None`` when it may try now (nothing counted)."""
        if self.rate is None:
            return None
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        if len(self.history) < self.num_requests:
            return None
        return math.ceil(self.wait())

    def record_failure(self, request: HttpRequest) -> None:
        self.allow_request(request, None)


class ThrottledLoginView(auth_views.LoginView):
    """Django's log-in page; an address with too many recent failures gets 429 and is not checked."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        retry_after = LoginFailureThrottle().retry_after(request)
        if retry_after is None:
            return super().post(request, *args, **kwargs)
        messages.error(request, f"Too many failed log-ins from your address. Try again in {retry_after} s.")
        # An unbound form: a bound one would check the password when the page shows its errors.
        form = self.get_form_class()(request=request, initial={"username": request.POST.get("username")})
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(retry_after)
        return response

    def form_invalid(self, form) -> HttpResponse:
        LoginFailureThrottle().record_failure(self.request)
        return super().form_invalid(form)
