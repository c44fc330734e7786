"""The Celery app. Workers start with ``celery -A kbsite worker -Q gpu`` (training) or ``-Q cpu``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kbsite.settings")

app = Celery("kbsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
