"""An https URL import connects to the checked address and still verifies the URL's host name.

The server is a local TLS server with a certificate for ``files.example.org`` only; the name
resolves (once) to 127.0.0.1, which the test lets through the address check.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from learning import url_fetch
from learning.errors import InvalidInput
from learning.services.domains import domain_import
from tests.learning.factories import make_image_zip
from tests.security.local_http import local_server, serve_files

pytestmark = pytest.mark.django_db

HOST = "files.example.org"


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_files(tmp_path, monkeypatch):
    """A TLS server of ``set.zip`` for HOST on 127.0.0.1, HOST resolving there once; yields (server, cert)."""
    www = tmp_path / "www"
    www.mkdir()
    make_image_zip(www / "set.zip", {"a": 2, "b": 2})
    cert, key = self_signed(tmp_path, HOST)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    lookups: list[str] = []

    def resolve_once(host, port, *args, **kwargs):
        lookups.append(host)
        if len(lookups) > 1:
            raise socket.gaierror(socket.EAI_NONAME, "rebound")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(url_fetch.socket, "getaddrinfo", resolve_once)
    monkeypatch.setattr(url_fetch, "address_allowed", lambda ip: ip == ipaddress.ip_address("127.0.0.1"))
    with local_server(serve_files(www), tls=server_context) as server:
        yield server, cert, lookups


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(tls_files, monkeypatch):
    # given a TLS server for HOST, and a client that trusts its certificate
    server, cert, lookups = tls_files
    trusting = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(url_fetch.ssl, "create_default_context", lambda: trusting)

    # when its https URL is imported
    domain = domain_import(source=f"https://{HOST}:{server.port}/set.zip", name="Over TLS")

    # then the one checked address was used, with HOST in SNI, the certificate check and Host
    assert domain.example_count == 4
    assert lookups == [HOST]
    assert server.requests == [("/set.zip", f"{HOST}:{server.port}")]


def test_https_refuses_a_certificate_it_cannot_verify(tls_files):
    # given a TLS server whose certificate no trusted authority signed
    server, _cert, _lookups = tls_files

    # when its https URL is imported, then the certificate is refused
    with pytest.raises(InvalidInput, match="TLS certificate could not be verified"):
        domain_import(source=f"https://{HOST}:{server.port}/set.zip", name="Untrusted")
    assert server.requests == []
