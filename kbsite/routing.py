"""Websocket URL routes of every app."""

from learning.routing import websocket_urlpatterns as learning_ws
from tasks_app.routing import websocket_urlpatterns as tasks_ws

websocket_urlpatterns = [*learning_ws, *tasks_ws]
