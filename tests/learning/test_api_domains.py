"""The domain API: scoped lists and details by slug, filters, and imports through ``domain_import``."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from learning.models import SourceDomain, Visibility
from tests.learning.factories import image_domain, make_image_zip
from tests.security.local_http import allow_local

pytestmark = pytest.mark.django_db

URL = "/api/v1/domains/"


def _row(slug: str, *, owner=None, visibility: str = Visibility.PUBLIC, **fields) -> SourceDomain:
    """A catalog row written directly (no arrays): enough for lists, filters and ordering."""
    fields.setdefault("modality", SourceDomain.Modality.IMAGE_CLASSIFICATION)
    fields.setdefault("origin", SourceDomain.Origin.UPLOAD)
    return SourceDomain.objects.create(
        name=fields.pop("name", slug.title()), slug=slug, owner=owner, visibility=visibility, **fields
    )


def _slugs(response) -> list[str]:
    return [row["slug"] for row in response.json()["results"]]


def _zip_upload(tmp_path, classes: dict[str, int], groups: bool = False, **kwargs) -> SimpleUploadedFile:
    archive = make_image_zip(tmp_path / "images.zip", classes, groups, **kwargs)
    return SimpleUploadedFile("images.zip", archive.read_bytes(), content_type="application/zip")


def test_anonymous_list_shows_public_domains_only(api_client, user):
    # given a public domain and a private one of ada's
    _row("birds")
    _row("secret", owner=user, visibility=Visibility.PRIVATE)

    # when an anonymous client lists the domains
    response = api_client.get(URL)

    # then only the public one is listed
    assert response.status_code == 200
    assert _slugs(response) == ["birds"]


def test_owner_reads_private_domain_by_slug_and_others_get_404(
    user_client, stranger_client, api_client, user
):
    # given ada's private imported domain
    domain = image_domain(name="Secret strokes", owner=user, visibility="private", description="mine")

    # when ada, eve and an anonymous client ask for it by slug
    mine = user_client.get(f"{URL}{domain.slug}/")
    theirs = stranger_client.get(f"{URL}{domain.slug}/")
    anonymous = api_client.get(f"{URL}{domain.slug}/")

    # then ada reads it with its classes, and to the others it does not exist
    assert mine.status_code == 200
    body = mine.json()
    assert body["name"] == "Secret strokes"
    assert body["owner"] == "ada"
    assert body["class_count"] == 5
    assert [c["name"] for c in body["classes"]] == [f"class-{i}" for i in range(5)]
    assert theirs.status_code == 404
    assert anonymous.status_code == 404
    assert domain.slug not in _slugs(stranger_client.get(URL))
    assert domain.slug in _slugs(user_client.get(URL))


def test_list_rows_leave_the_classes_to_the_detail(api_client):
    # given a domain with classes
    _row("birds", classes=[{"name": "owl", "group": "", "count": 3}], class_count=1)

    # when it is listed
    row = api_client.get(URL).json()["results"][0]

    # then the list row has the counts but not the class list
    assert row["class_count"] == 1
    assert "classes" not in row


def test_filters_and_search(api_client, user, stranger):
    # given domains of different kinds, origins and owners
    _row("birds", owner=user, description="photos of birds")
    _row("sines", modality=SourceDomain.Modality.FUNCTION_REGRESSION, origin=SourceDomain.Origin.BUILTIN)
    _row("fungi", owner=stranger, origin=SourceDomain.Origin.URL, name="Mushrooms")

    # when the list is filtered and searched
    def slugs(**params):
        return sorted(_slugs(api_client.get(URL, params)))

    # then each filter keeps the matching domains
    assert slugs(modality="function_regression") == ["sines"]
    assert slugs(origin="url") == ["fungi"]
    assert slugs(origin="upload", modality="image_classification") == ["birds"]
    assert slugs(owner="ada") == ["birds"]
    assert slugs(visibility="public") == ["birds", "fungi", "sines"]
    assert slugs(search="mushroom") == ["fungi"]
    assert slugs(search="photos") == ["birds"]


def test_unknown_filter_choice_is_400(api_client):
    # given the domain list

    # when it is filtered by a modality that does not exist
    response = api_client.get(URL, {"modality": "audio"})

    # then the filter is rejected
    assert response.status_code == 400
    assert "modality" in response.json()


def test_ordering_and_pagination(api_client):
    # given three domains of different sizes
    _row("b-mid", class_count=20)
    _row("a-big", class_count=30)
    _row("c-small", class_count=10)

    # when ordered by name, by size, and paged two at a time
    by_name = _slugs(api_client.get(URL, {"ordering": "name"}))
    by_size = _slugs(api_client.get(URL, {"ordering": "-class_count"}))
    first = api_client.get(URL, {"ordering": "class_count", "page_size": 2}).json()
    second = api_client.get(first["next"]).json()

    # then orders and pages follow
    assert by_name == ["a-big", "b-mid", "c-small"]
    assert by_size == ["a-big", "b-mid", "c-small"]
    assert first["count"] == 3
    assert [row["slug"] for row in first["results"]] == ["c-small", "b-mid"]
    assert [row["slug"] for row in second["results"]] == ["a-big"]
    assert first["previous"] is None and second["next"] is None


def test_import_an_uploaded_zip(user_client, user, tmp_path):
    # given a zip of grouped image classes
    upload = _zip_upload(tmp_path, {"alpha": 3, "beta": 3, "gamma": 3}, groups=True, variant=11)

    # when ada uploads it as a private domain
    response = user_client.post(
        URL,
        {
            "name": "My strokes",
            "file": upload,
            "visibility": "private",
            "description": "hand drawn",
            "citation": "Ada, 2024",
            "license": "CC-BY-4.0",
        },
        format="multipart",
    )

    # then the domain is hers, private, with its classes and groups
    assert response.status_code == 201, response.json()
    body = response.json()
    domain = SourceDomain.objects.get(slug=body["slug"])
    assert domain.owner == user
    assert (body["visibility"], body["origin"], body["license"]) == ("private", "upload", "CC-BY-4.0")
    assert body["class_count"] == 3
    assert body["example_count"] == 9
    assert sorted(g["name"] for g in body["class_groups"]) == ["group-a", "group-b"]
    assert {c["name"] for c in body["classes"]} == {"group-a/alpha", "group-b/beta", "group-a/gamma"}


def test_import_from_a_url(user_client, user, tmp_path, monkeypatch):
    # given a zip served over http, on a local server let through the URL check
    make_image_zip(tmp_path / "strokes.zip", {"a": 3, "b": 3}, variant=12)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/strokes.zip"
    allow_local(monkeypatch, server.server_port)

    # when ada imports it by URL with a JSON body
    try:
        response = user_client.post(URL, {"name": "From the web", "url": url}, format="json")
    finally:
        server.shutdown()
        server.server_close()

    # then the domain records where it came from
    assert response.status_code == 201, response.json()
    domain = SourceDomain.objects.get(slug=response.json()["slug"])
    assert (domain.origin, domain.source_url, domain.owner) == ("url", url, user)
    assert response.json()["class_count"] == 2


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "No source"}, "non_field_errors"),
        ({"name": "Bad scheme", "url": "ftp://example.org/x.zip"}, "url"),
        ({"name": "Both", "url": "https://example.org/x.zip", "file": "zip"}, "non_field_errors"),
        ({"name": "Not a zip", "file": "junk"}, "file"),
        ({"name": "", "file": "zip"}, "name"),
        ({"name": "Bad visibility", "file": "zip", "visibility": "secret"}, "visibility"),
    ],
)
def test_bad_imports_are_400_naming_the_field(user_client, tmp_path, data, field):
    # given an upload that is a real zip, or junk
    if data.get("file") == "zip":
        data["file"] = _zip_upload(tmp_path, {"a": 3, "b": 3}, variant=13)
    elif data.get("file") == "junk":
        data["file"] = SimpleUploadedFile("images.zip", b"this is not a zip", content_type="application/zip")

    # when ada imports it
    response = user_client.post(URL, data, format="multipart")

    # then the field is named, and nothing is written
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert SourceDomain.objects.count() == 0


def test_import_of_content_already_in_the_catalog_is_400(user_client, tmp_path):
    # given a domain imported from a zip
    first = user_client.post(
        URL,
        {"name": "First", "file": _zip_upload(tmp_path, {"a": 3, "b": 3}, variant=14)},
        format="multipart",
    )
    assert first.status_code == 201

    # when the same images are imported again under another name
    again = user_client.post(
        URL,
        {"name": "Again", "file": _zip_upload(tmp_path, {"a": 3, "b": 3}, variant=14)},
        format="multipart",
    )

    # then the service's error comes back on the file field, and only the first domain exists
    assert again.status_code == 400
    assert "already" in again.json()["file"][0]
    assert SourceDomain.objects.count() == 1


def test_anonymous_cannot_import(api_client, tmp_path):
    # given an anonymous client and a zip
    upload = _zip_upload(tmp_path, {"a": 3, "b": 3}, variant=15)

    # when it uploads the zip
    response = api_client.post(URL, {"name": "Anon", "file": upload}, format="multipart")

    # then it is refused and nothing is written
    assert response.status_code == 401
    assert SourceDomain.objects.count() == 0
