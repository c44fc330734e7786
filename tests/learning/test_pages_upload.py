"""The domain upload form: a small zip becomes a domain, a large one an import job; errors by their field."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from learning.artifacts import artifact_storage
from learning.models import SourceDomain
from tasks_app.models import Job
from tests.learning.factories import make_image_zip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """A cheap hasher: these tests check the form, not password storage (autouse runs before ``user``)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _upload(path, name: str = "images.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, path.read_bytes(), content_type="application/zip")


def test_upload_page_needs_a_login(client):
    # when an anonymous visitor opens the upload page
    response = client.get(reverse("domain-upload"))

    # then they are sent to log in first
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_upload_creates_the_domain_and_shows_it(client, user, tmp_path):
    # given a logged-in user with a zip of two groups of classes
    client.force_login(user)
    archive = make_image_zip(
        tmp_path / "glyphs.zip", {"alpha": 3, "beta": 3, "gamma": 3, "delta": 3}, groups=True
    )

    # when they submit the form
    response = client.post(
        reverse("domain-upload"),
        {
            "name": "My Glyphs",
            "source": _upload(archive),
            "visibility": "private",
            "description": "Four hand-drawn glyphs.",
            "citation": "Me, 2026",
            "license": "CC-BY-4.0",
        },
    )

    # then the domain exists, owned by them and private, and they land on its page
    domain = SourceDomain.objects.get(name="My Glyphs")
    assert response.status_code == 302
    assert response["Location"] == reverse("domain-detail", args=[domain.slug])
    assert (domain.owner, domain.visibility, domain.class_count, domain.example_count) == (
        user,
        "private",
        4,
        12,
    )
    assert domain.license == "CC-BY-4.0"

    # and its page shows the groups and one thumbnail per class, each served as a PNG
    page = client.get(response["Location"])
    html = page.content.decode()
    assert "group-a" in html and "group-b" in html
    assert html.count(f'src="/domains/{domain.slug}/thumbs/') == 4
    thumb = client.get(reverse("domain-thumbnail", args=[domain.slug, 3]))
    assert thumb["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(b"".join(thumb.streaming_content))).format == "PNG"
    assert artifact_storage().exists(f"domains/{domain.slug}/thumbs/3.png")


def test_a_bad_zip_shows_the_error_beside_the_file_field_and_creates_nothing(client, user):
    # given a logged-in user and a file that is not a zip
    client.force_login(user)
    junk = SimpleUploadedFile("images.zip", b"this is not a zip archive", content_type="application/zip")

    # when they submit it
    response = client.post(
        reverse("domain-upload"), {"name": "Broken", "source": junk, "visibility": "public"}
    )

    # then the form comes back with the error on the file field, and no domain is made
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["source"]
    assert "__all__" not in form.errors
    html = response.content.decode()
    assert 'class="field has-error"' in html
    assert form.errors["source"][0] in html
    assert not SourceDomain.objects.exists()


def test_a_taken_name_shows_the_error_beside_the_name_field(client, user, tmp_path):
    # given an existing domain called "Glyphs"
    client.force_login(user)
    first = make_image_zip(tmp_path / "a.zip", {"a": 2, "b": 2}, variant=1)
    second = make_image_zip(tmp_path / "b.zip", {"a": 2, "b": 2}, variant=2)
    client.post(
        reverse("domain-upload"), {"name": "Glyphs", "source": _upload(first), "visibility": "public"}
    )
    assert SourceDomain.objects.count() == 1

    # when another zip is uploaded under the same name
    response = client.post(
        reverse("domain-upload"), {"name": "Glyphs", "source": _upload(second), "visibility": "public"}
    )

    # then the name field carries the error, and still only one domain exists
    assert response.status_code == 400
    assert response.context["form"].errors["name"]
    assert SourceDomain.objects.count() == 1


def test_missing_fields_are_reported_by_the_form(client, user):
    # given a logged-in user
    client.force_login(user)

    # when they submit an empty form
    response = client.post(reverse("domain-upload"), {"visibility": "public"})

    # then the name and the file are required, and nothing is imported
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"name", "source"}
    assert not SourceDomain.objects.exists()


def test_a_large_zip_is_imported_by_a_job_whose_page_the_form_leads_to(client, user, tmp_path, settings):
    # given a logged-in user, and a zip over the inline import limit
    settings.IMPORT_INLINE_MAX_BYTES = 1000
    client.force_login(user)
    archive = make_image_zip(tmp_path / "glyphs.zip", {"alpha": 3, "beta": 3, "gamma": 3}, groups=True)
    assert archive.stat().st_size > 1000
    assert "imported in the background by a job" in client.get(reverse("domain-upload")).content.decode()

    # when they submit the form
    response = client.post(
        reverse("domain-upload"),
        {"name": "Big Glyphs", "source": _upload(archive), "visibility": "private", "license": "CC0"},
    )

    # then no domain exists yet: they land on the page of the queued import job, told why
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.kind, job.status, job.owner, job.domain) == ("import", "queued", user, None)
    assert job.config["name"] == "Big Glyphs" and job.config["visibility"] == "private"
    assert not SourceDomain.objects.exists()
    page = client.get(response["Location"]).content.decode()
    assert f"Job #{job.pk}: Import of 'Big Glyphs'" in page
    assert f"imported by job {job.pk}, which runs in the background" in page
    assert "created when the import succeeds" in page and "images.zip" in page
    # and the job list names it too
    assert "Big Glyphs" in client.get(reverse("job-list")).content.decode()
