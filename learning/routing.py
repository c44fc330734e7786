"""Websocket routes of the knowledge base."""

from django.urls import path

from learning.consumers import CatalogConsumer

websocket_urlpatterns = [
    path("ws/catalog/", CatalogConsumer.as_asgi()),
]
