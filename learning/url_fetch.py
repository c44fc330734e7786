"""Downloading a user-given URL without letting it reach this machine or its networks (SSRF).

``fetch_url`` is what a domain import from a URL goes through (``learning.domain_files.read_url``):

- Only ``http`` and ``https``. The host is resolved here (``socket.getaddrinfo``) and the URL
  is refused unless *every* address it resolves to is public (``address_allowed``: globally
  routable, not loopback, private, link-local, multicast, reserved or unspecified; an
  IPv4-mapped or 6to4 IPv6 address is judged by the IPv4 address inside it).
- The connection goes to one of the addresses just checked, never to a fresh lookup, so a
  DNS answer that changes between the check and the connection (DNS rebinding) cannot
  redirect it. The request still carries the URL's host name in ``Host`` and, for https, in
  SNI and the certificate check.
- Redirects are followed here, at most ``MAX_REDIRECTS``, each target checked the same way.
  No proxy from the environment is used.
- One deadline (``IMPORT_URL_DEADLINE_S``) covers the whole download: lookups, connections,
  headers and body. A timer shuts the socket down when it passes, so a server that trickles
  a byte every few seconds is cut off at the deadline, not after it.
- The size cap is enforced from ``Content-Length`` and again while streaming.

Every refused address gives the one message ``REFUSED``, whatever the reason (loopback,
private, the cloud metadata address, a name that does not resolve): a client learns nothing
about which internal hosts or ports exist, as nothing internal is ever contacted. Errors from
public hosts (an HTTP status, a refused connection, a TLS failure) say what happened.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from typing import IO

from learning.domain_layout import invalid_source
from learning.errors import InvalidInput

REFUSED = "the URL cannot be fetched: only public http(s) addresses are allowed"
"""The one message for every address a URL import may not reach."""

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_SAFE = "/%!$&'()*+,;=:@-._~"
_HEADERS = {"User-Agent": "MetaKB domain import", "Accept-Encoding": "identity"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Vetted = list[tuple[int, tuple]]
"""``(family, sockaddr)`` pairs, every one of them checked by ``address_allowed``."""


def address_allowed(ip: IPAddress) -> bool:
    """Whether a URL import may connect to ``ip``: a globally routable unicast address only."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            return address_allowed(inner)
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_unspecified
    )


def resolve_public(host: str, port: int) -> Vetted:
    """The addresses of ``host``, if every one is allowed; otherwise ``InvalidInput(REFUSED)``.

    A name that does not resolve is refused with the same message, so that the answer never
    tells an internal name from a missing one.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        raise invalid_source(REFUSED) from None
    vetted: Vetted = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise invalid_source(REFUSED)
        try:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError:
            raise invalid_source(REFUSED) from None
        if not address_allowed(ip):
            raise invalid_source(REFUSED)
        vetted.append((family, sockaddr))
    if not vetted:
        raise invalid_source(REFUSED)
    return vetted


class _Deadline:
    """The time left until one absolute deadline, and a timer that cuts a socket off at it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.sockets: list[socket.socket] = []
        self.passed = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; raises the deadline's error once none are."""
        left = self.end - time.monotonic()
        if left <= 0 or self.passed:
            raise self.error()
        return left

    def error(self) -> InvalidInput:
        return invalid_source(
            f"the download took longer than the {self.seconds:g}-second limit (IMPORT_URL_DEADLINE_S)"
        )

    def _cut(self) -> None:
        self.passed = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS

    def cancel(self) -> None:
        self._timer.cancel()


class _PinnedMixin:
    """An ``http.client`` connection that connects to vetted addresses, not to a fresh lookup.

    ``http.client`` keeps ``host`` for the ``Host`` header and, for https, for SNI and the
    certificate check; only the socket's destination is taken from ``vetted``.
    """

    sock: socket.socket | None

    def __init__(self, host: str, port: int, *, vetted: Vetted, deadline: _Deadline, **kwargs) -> None:
        super().__init__(host, port, timeout=deadline.left(), **kwargs)  # type: ignore[call-arg]
        self.vetted, self.deadline = vetted, deadline
        self.kept: socket.socket | None = None
        self._create_connection = self._connect_vetted

    def _connect_vetted(self, address, timeout=None, source_address=None) -> socket.socket:
        last: OSError | None = None
        for family, sockaddr in self.vetted:
            sock = socket.socket(family, socket.SOCK_STREAM)
            self.deadline.sockets.append(sock)
            try:
                sock.settimeout(self.deadline.left())
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError("no address to connect to")

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.kept = self.sock  # the response keeps reading it after http.client lets go of it
        if self.sock is not None:
            self.deadline.sockets.append(self.sock)


class _PinnedHTTP(_PinnedMixin, http.client.HTTPConnection):
    pass


class _PinnedHTTPS(_PinnedMixin, http.client.HTTPSConnection):
    pass


def _parse(url: str, *, first: bool) -> tuple[urllib.parse.SplitResult, str, int]:
    """The URL's parts, host and port; a bad scheme is named on the first hop, else ``REFUSED``."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.netloc:
        raise invalid_source(f"{url} is not an http or https URL" if first else REFUSED)
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        raise invalid_source(f"{url} is not a valid URL") from None
    if not host:
        raise invalid_source(f"{url} is not a valid URL")
    return parsed, host, port or _DEFAULT_PORTS[parsed.scheme]


def _request(url: str, deadline: _Deadline, *, first: bool) -> tuple[_PinnedMixin, http.client.HTTPResponse]:
    """One GET of ``url`` on a pinned connection, after its host passed ``resolve_public``."""
    parsed, host, port = _parse(url, first=first)
    vetted = resolve_public(host, port)
    deadline.left()
    cls = _PinnedHTTPS if parsed.scheme == "https" else _PinnedHTTP
    kwargs = {"context": ssl.create_default_context()} if parsed.scheme == "https" else {}
    conn = cls(host, port, vetted=vetted, deadline=deadline, **kwargs)
    path = urllib.parse.quote(parsed.path or "/", safe=_URL_SAFE)
    target = path + ("?" + urllib.parse.quote(parsed.query, safe=_URL_SAFE + "?") if parsed.query else "")
    try:
        conn.request("GET", target, headers=_HEADERS)
        return conn, conn.getresponse()
    except BaseException as exc:
        conn.close()
        if isinstance(exc, InvalidInput):
            raise
        if deadline.passed or isinstance(exc, TimeoutError):
            raise deadline.error() from None
        if isinstance(exc, OSError | http.client.HTTPException | ValueError):
            raise invalid_source(f"could not download {url} ({_reason(exc)})") from None
        raise


def _reason(exc: BaseException) -> str:
    """A short account of a network error from a public host, without internal details."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "its TLS certificate could not be verified"
    if isinstance(exc, ssl.SSLError):
        return "the TLS connection failed"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, ConnectionError):
        return "the connection was closed"
    if isinstance(exc, http.client.HTTPException):
        return "the server's answer was not valid HTTP"
    if isinstance(exc, ValueError):
        return "the URL is not valid"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _open(url: str, deadline: _Deadline) -> tuple[_PinnedMixin, http.client.HTTPResponse]:
    """The response to ``url`` after following at most ``MAX_REDIRECTS`` redirects."""
    for hop in range(MAX_REDIRECTS + 1):
        conn, response = _request(url, deadline, first=hop == 0)
        location = response.getheader("Location")
        if response.status not in _REDIRECTS or not location:
            return conn, response
        response.close()
        conn.close()  # type: ignore[attr-defined]
        url = urllib.parse.urljoin(url, location.strip())
    raise invalid_source(f"the URL redirects more than {MAX_REDIRECTS} times")


def fetch_url(url: str, file: IO[bytes], *, max_bytes: int, deadline_s: float) -> None:
    """Download ``url`` into ``file``: at most ``max_bytes``, within ``deadline_s`` seconds overall.

    Raises ``InvalidInput`` (``field="source"``) for a refused URL (``REFUSED``), an HTTP
    error, a network failure, a body over the cap, or a download past the deadline.
    """
    deadline = _Deadline(deadline_s)
    conn: _PinnedMixin | None = None
    try:
        conn, response = _open(url, deadline)
        with response:
            if response.status != 200:
                reason = str(response.reason)[:80]
                raise invalid_source(f"could not download {url} (HTTP {response.status} {reason})")
            length = response.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > max_bytes:
                raise invalid_source(f"{url} is {int(length):,} bytes; the limit is {max_bytes:,}")
            _stream(response, file, sock=conn.kept, url=url, max_bytes=max_bytes, deadline=deadline)
    finally:
        deadline.cancel()
        if conn is not None:
            conn.close()  # type: ignore[attr-defined]


def _stream(
    response: http.client.HTTPResponse,
    file: IO[bytes],
    *,
    sock: socket.socket | None,
    url: str,
    max_bytes: int,
    deadline: _Deadline,
) -> None:
    """Copy the body into ``file``, one socket read at a time, against the cap and the deadline."""
    size = 0
    while True:
        try:
            if sock is not None:
                sock.settimeout(deadline.left())
            chunk = response.read1(_CHUNK)  # what one read brings, so the clock is checked between reads
        except (OSError, http.client.HTTPException) as exc:
            if deadline.passed or isinstance(exc, TimeoutError):
                raise deadline.error() from None
            raise invalid_source(f"the download of {url} failed ({_reason(exc)})") from None
        deadline.left()
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise invalid_source(f"{url} is larger than the {max_bytes:,}-byte limit")
        file.write(chunk)
    if response.length:  # http.client counts down what Content-Length promised and did not come
        raise invalid_source(f"the download of {url} ended early")
