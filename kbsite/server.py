"""The web server ``runkb`` starts: Daphne, with request bodies bounded while they arrive.

    python -m kbsite.server -b 127.0.0.1 -p 8000 kbsite.asgi:application   (Daphne's arguments)

Daphne (through Twisted) receives a whole request body, spooled to a temporary file, before
it calls the ASGI application, and then hands all of it over at once; a limit in the
application (``learning.body_limits``) therefore comes after a 300 MB body has been read
and held in memory. :class:`BoundedRequest` refuses in the server instead, with the same
limits (:func:`learning.body_limits.body_limit`): from ``Content-Length`` as soon as the
headers are in, and by counting a body sent without one as it arrives.

A refusal is a JSON 413 written at once. The server then closes its side for writing and
discards (never stores) whatever the client still sends, for at most
:data:`LINGER_SECONDS`, before closing: closing a socket with unread data makes the kernel
send a reset, which can destroy the 413 before the client reads it.
"""

from __future__ import annotations

# daphne.server installs the asyncio reactor; it must come before anything imports Twisted's.
import daphne.server  # noqa: F401  isort:skip

import io
import json
from urllib.parse import unquote, urlsplit

from daphne import http_protocol
from daphne.cli import CommandLineInterface

from learning.body_limits import body_limit

LINGER_SECONDS = 10.0
"""How long a refused client may go on sending (discarded) before its connection is cut."""


class BoundedRequest(http_protocol.WebRequest):
    """Daphne's request, refusing a body over its path's limit before storing any more of it."""

    _refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        # Twisted has parsed the request line into the channel but not yet into this
        # request (that happens once the body is complete), hence the channel's _path.
        path = unquote(urlsplit(self.channel._path).path.decode("latin-1"))
        self._limit, self._setting = body_limit(path)
        if length is not None and length > self._limit:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self):
        if self._refused:
            # The client sent its whole body after all; nothing is left unread, so close now.
            self.channel.transport.loseConnection()
            return None
        return super().process()

    def _refuse(self) -> None:
        self._refused = True
        self.content = io.BytesIO()
        # Twisted answers "Expect: 100-continue" right after gotLength; the 413 is the answer.
        self.requestHeaders.removeHeader(b"expect")
        body = json.dumps(
            {"detail": f"the request body is larger than {self._limit:,} bytes (setting {self._setting})"}
        ).encode()
        head = (
            "HTTP/1.1 413 Content Too Large\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        transport = self.channel.transport
        transport.write(head.encode() + body)
        transport.loseWriteConnection()
        self.channel.callLater(LINGER_SECONDS, transport.abortConnection)


def main() -> None:
    """Run Daphne's command line with :class:`BoundedRequest` as its request class."""
    # Daphne's HTTPFactory builds each connection's requests from this module attribute.
    http_protocol.WebRequest = BoundedRequest
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
