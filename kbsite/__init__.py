"""MetaKB project configuration: settings, urls, ASGI routing and the Celery app."""

from kbsite.celery import app as celery_app

__all__ = ["celery_app"]
