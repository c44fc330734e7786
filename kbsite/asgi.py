"""ASGI entry point: HTTP goes to Django, websockets to the Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kbsite.settings")
# Django must be set up before the consumers (and the models they import) load.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from kbsite.routing import websocket_urlpatterns  # noqa: E402
from learning.body_limits import limit_bodies  # noqa: E402
from learning.heavy_work import watch_disconnects  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Oversize bodies are refused before they are read; a client that disconnects has its
        # heavy work (predictions, imports) stopped.
        "http": limit_bodies(watch_disconnects(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
