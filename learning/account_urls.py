"""Sign-up, log-in and log-out (log-out is a POST, as Django 5 requires); failed log-ins are throttled."""

from django.contrib.auth import views as auth_views
from django.urls import path

from learning import views
from learning.throttles import ThrottledLoginView

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
