"""The REST API of the knowledge base, under /api/v1/, and its token endpoint for scripts."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from learning.api import views
from learning.api.transfer import TransferMatrixView

# A namespace keeps the routers' names ("domain-list", ...) apart from the pages' names.
app_name = "api"

# The root view is ours: it also links the jobs, the transfer matrix and the token endpoint.
router = DefaultRouter()
router.include_root_view = False
router.register("domains", views.DomainViewSet, basename="domain")
router.register("task-specs", views.TaskSpecViewSet, basename="taskspec")
router.register("models", views.MetaModelViewSet, basename="metamodel")
router.register("evaluations", views.EvaluationViewSet, basename="evaluation")

urlpatterns = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("transfer-matrix/", TransferMatrixView.as_view(), name="transfer-matrix"),
    *router.urls,
]
