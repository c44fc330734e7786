"""Websocket routes of jobs."""

from django.urls import path

from tasks_app.consumers import DashboardConsumer, JobConsumer

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
