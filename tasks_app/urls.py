"""Job page URLs."""

from django.urls import path

from tasks_app import views

urlpatterns = [
    path("", views.job_list, name="job-list"),
    path("new/", views.job_launch, name="job-launch"),
    path("transfer/", views.job_transfer, name="job-transfer"),
    path("<int:pk>/", views.job_detail, name="job-detail"),
    path("<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("<int:pk>/checkpoint/", views.job_checkpoint, name="job-checkpoint"),
]
