"""Sign-up, log-in and log-out (log-out is a POST, as Django 5 requires)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from learning import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
