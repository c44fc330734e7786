"""Importing a domain from a URL cannot reach this machine or its networks (issue 10, SSRF).

Through the API (``POST /api/v1/domains/`` with a url) and the service it calls
(``domain_import``): every refused address gets the one message ``url_fetch.REFUSED`` and
nothing is contacted or written; redirects are checked hop by hop; the connection goes to
the address that was checked; one deadline covers the download; ``IMPORT_FROM_URL`` turns
it off.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

import pytest

from learning import url_fetch
from learning.errors import InvalidInput
from learning.models import SourceDomain
from learning.services.domains import domain_import
from tests.learning.factories import make_image_zip
from tests.security.local_http import allow_local, free_port, local_server, serve_files

pytestmark = pytest.mark.django_db

API = "/api/v1/domains/"
REFUSED = "the URL cannot be fetched: only public http(s) addresses are allowed"


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def refused_message(source: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        domain_import(source=source, name="From the web")
    assert caught.value.field == "source"
    return caught.value.message


@pytest.fixture
def www(tmp_path) -> Path:
    folder = tmp_path / "www"
    folder.mkdir()
    make_image_zip(folder / "set.zip", {"a": 2, "b": 2})
    return folder


def test_a_zip_on_loopback_is_refused_and_nothing_is_written(user_client, www, artifacts_in_tmp):
    # given a real zip served on 127.0.0.1
    with local_server(serve_files(www)) as server:
        # when ada imports it by URL through the API
        response = user_client.post(API, {"name": "Local", "url": server.url("/set.zip")}, format="json")

    # then it is refused with the uniform message, the server was never contacted, nothing is written
    assert response.status_code == 400
    assert response.json()["url"] == [REFUSED]
    assert server.requests == []
    assert SourceDomain.objects.count() == 0
    assert stored_files(artifacts_in_tmp) == []


def test_a_closed_port_and_an_open_port_on_loopback_give_the_same_answer(user_client, www):
    # given a port with a server and one without
    with local_server(serve_files(www)) as server:
        # when both are imported
        open_answer = user_client.post(API, {"name": "Open", "url": server.url("/set.zip")}, format="json")
        closed_url = f"http://127.0.0.1:{free_port()}/set.zip"
        closed_answer = user_client.post(API, {"name": "Closed", "url": closed_url}, format="json")

    # then the answers cannot be told apart
    assert (open_answer.status_code, closed_answer.status_code) == (400, 400)
    assert open_answer.json() == closed_answer.json() == {"url": [REFUSED]}


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/set.zip",
        "http://10.0.0.1/set.zip",
        "http://192.168.1.1/set.zip",
        "http://172.16.0.1/set.zip",
        "http://100.64.0.1/set.zip",
        "http://0.0.0.0/set.zip",
        "http://127.1/set.zip",
        "http://localhost/set.zip",
        "https://[::ffff:127.0.0.1]/set.zip",
        "http://[fe80::1]/set.zip",
        "http://[fd00::1]/set.zip",
        "http://224.0.0.1/set.zip",
    ],
)
def test_internal_addresses_are_refused_with_the_one_message(url, artifacts_in_tmp):
    # when a URL naming this machine, a private network or the metadata service is imported
    message = refused_message(url)

    # then it is refused with the uniform message, and nothing is written
    assert message == REFUSED
    assert SourceDomain.objects.count() == 0
    assert stored_files(artifacts_in_tmp) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/set.zip", "gopher://example.org/"])
def test_other_schemes_are_refused(url):
    # when a URL with another scheme is imported, then it is refused as not http(s)
    assert "not an http or https URL" in refused_message(url)


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(monkeypatch, www):
    # given a name whose DNS answer is 127.0.0.1, where a real server listens
    with local_server(serve_files(www)) as server:
        monkeypatch.setattr(
            url_fetch.socket,
            "getaddrinfo",
            lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port))],
        )

        # when it is imported, then it is refused with the uniform message and never contacted
        assert refused_message(f"http://files.example.org:{server.port}/set.zip") == REFUSED
    assert server.requests == []


def test_a_name_is_refused_if_any_of_its_addresses_is_internal(monkeypatch):
    # given a name that resolves to a public address and to the metadata address
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)),
    ]
    monkeypatch.setattr(url_fetch.socket, "getaddrinfo", lambda *a, **k: answers)

    # when it is imported, then it is refused
    assert refused_message("http://mixed.example.org/set.zip") == REFUSED


def test_a_name_that_does_not_resolve_gets_the_same_message(monkeypatch):
    # given a name with no DNS answer
    def no_answer(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(url_fetch.socket, "getaddrinfo", no_answer)

    # when it is imported, then the message is the one every refused address gets
    assert refused_message("http://intranet.corp/set.zip") == REFUSED


def test_a_redirect_to_loopback_is_refused(monkeypatch, www, artifacts_in_tmp):
    # given an allowed server that redirects to a zip on another loopback server
    with local_server(serve_files(www)) as target:

        def redirect(request):
            request.send_response(302)
            request.send_header("Location", target.url("/set.zip"))
            request.end_headers()

        with local_server(redirect) as first:
            allow_local(monkeypatch, first.port)

            # when the allowed server's URL is imported
            message = refused_message(first.url("/set.zip"))

    # then the redirect's target is checked like the first URL: refused, never contacted
    assert message == REFUSED
    assert len(first.requests) == 1
    assert target.requests == []
    assert SourceDomain.objects.count() == 0
    assert stored_files(artifacts_in_tmp) == []


def test_redirects_are_followed_at_most_five_times(monkeypatch, www):
    # given an allowed server where /hop/N redirects to /hop/N+1 and /once to the zip
    def hops(request):
        if request.path.startswith("/hop/"):
            location = f"/hop/{int(request.path.rsplit('/', 1)[1]) + 1}"
        elif request.path == "/once":
            location = "/set.zip"
        else:
            serve_files(www)(request)
            return
        request.send_response(302)
        request.send_header("Location", location)
        request.end_headers()

    with local_server(hops) as server:
        allow_local(monkeypatch, server.port)

        # when an endless chain of redirects is imported, then it stops after five
        with pytest.raises(InvalidInput, match="redirects more than 5 times"):
            domain_import(source=server.url("/hop/0"), name="Loop")
        assert len(server.requests) == 6

        # and a single redirect on an allowed server is followed
        domain = domain_import(source=server.url("/once"), name="Redirected")
    assert domain.example_count == 4


def test_the_connection_goes_to_the_checked_address_with_the_original_host(monkeypatch, www):
    # given a name that resolves once to an address the check lets through; any later lookup
    # (DNS rebinding between the check and the connection) would fail
    with local_server(serve_files(www)) as server:
        lookups = []

        def resolve_once(host, port, *args, **kwargs):
            lookups.append(host)
            if len(lookups) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        monkeypatch.setattr(url_fetch.socket, "getaddrinfo", resolve_once)
        monkeypatch.setattr(url_fetch, "address_allowed", lambda ip: ip == ipaddress.ip_address("127.0.0.1"))

        # when it is imported
        domain = domain_import(source=f"http://files.example.org:{server.port}/set.zip", name="Pinned")

    # then one lookup was made, and the server saw the URL's own host name
    assert domain.example_count == 4
    assert lookups == ["files.example.org"]
    assert server.requests == [("/set.zip", f"files.example.org:{server.port}")]


def trickle(request):
    """Headers at once, then one byte of a promised 1,000 every 0.3 s."""
    request.send_response(200)
    request.send_header("Content-Length", "1000")
    request.end_headers()
    request.wfile.flush()
    for _ in range(100):
        request.wfile.write(b"x")
        request.wfile.flush()
        time.sleep(0.3)


def trickle_headers(request):
    """A status line and then one header byte every 0.3 s, never ending the headers."""
    request.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(100):
        request.wfile.write(b"X")
        request.wfile.flush()
        time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.parametrize("handle", [trickle, trickle_headers], ids=["body", "headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(monkeypatch, settings, handle, artifacts_in_tmp):
    # given an allowed server that sends a byte every 0.3 s, and a 2-second deadline
    settings.IMPORT_URL_DEADLINE_S = 2
    with local_server(handle) as server:
        allow_local(monkeypatch, server.port)

        # when its URL is imported
        started = time.monotonic()
        with pytest.raises(InvalidInput) as caught:
            domain_import(source=server.url("/set.zip"), name="Slow")
        took = time.monotonic() - started

    # then the download stops at the deadline, with a message naming it
    assert "2-second limit (IMPORT_URL_DEADLINE_S)" in caught.value.message
    assert 1.9 < took < 3.0
    assert SourceDomain.objects.count() == 0
    assert stored_files(artifacts_in_tmp) == []


def test_the_size_cap_holds_while_streaming_without_content_length(monkeypatch, settings):
    # given an allowed server that sends 10 kB with no Content-Length, and a 5,000-byte cap
    settings.IMPORT_MAX_BYTES = 5000

    def endless(request):
        request.send_response(200)
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(b"x" * 10_000)

    with local_server(endless) as server:
        allow_local(monkeypatch, server.port)

        # when its URL is imported, then the download stops at the cap
        with pytest.raises(InvalidInput, match="larger than the 5,000-byte limit"):
            domain_import(source=server.url("/big.zip"), name="Big")


def test_url_import_can_be_turned_off(user_client, settings, monkeypatch, www):
    # given an allowed server with a zip, and URL import turned off
    settings.IMPORT_FROM_URL = False
    with local_server(serve_files(www)) as server:
        allow_local(monkeypatch, server.port)

        # when ada imports it by URL
        response = user_client.post(API, {"name": "Off", "url": server.url("/set.zip")}, format="json")

    # then the answer names the setting, and nothing was fetched or written
    assert response.status_code == 400
    assert "IMPORT_FROM_URL" in response.json()["url"][0]
    assert server.requests == []
    assert SourceDomain.objects.count() == 0


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("2002:7f00:1::", False),
        ("fe80::1", False),
        ("ff02::1", False),
    ],
)
def test_address_allowed_lets_through_public_unicast_only(address, allowed):
    assert url_fetch.address_allowed(ipaddress.ip_address(address)) is allowed
