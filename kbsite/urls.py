"""Root URLs: pages, the REST API under /api/v1/, its schema and docs, and the admin."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    # Browsers and feed readers ask for /favicon.ico whatever the pages link.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("accounts/", include("learning.account_urls")),
    path("api/v1/", include("learning.api.urls")),
    path("api/v1/", include("tasks_app.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("jobs/", include("tasks_app.urls")),
    path("", include("learning.urls")),
]
