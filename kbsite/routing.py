"""Websocket URL routes of every app."""

from learning.routing import websocket_urlpatterns as learning_ws

websocket_urlpatterns = [*learning_ws]
