"""Importing image domains: the real Omniglot zips, folders, uploads, URLs, and every kind of bad input."""

from __future__ import annotations

import http.server
import io
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from PIL import Image

from learning.artifacts import artifact_read, artifact_storage
from learning.domain_files import _ByteCounter
from learning.domain_layout import ImportStopped
from learning.engine.data import load_image_arrays
from learning.errors import InvalidInput
from learning.images import normalize_image
from learning.models import SourceDomain
from learning.services.domains import domain_import
from tests.learning.factories import image_domain, make_image_folder, make_image_zip, png_bytes
from tests.security.local_http import allow_local

OMNIGLOT = Path(settings.BASE_DIR).parent / "shared" / "data" / "omniglot"
SMALL1_GROUPS = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]

pytestmark = pytest.mark.django_db


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_nothing_written(artifacts_root: Path, domains_before: int) -> None:
    assert SourceDomain.objects.count() == domains_before
    assert stored_files(artifacts_root) == []


# --- Real data --------------------------------------------------------------------------


@pytest.mark.slow
def test_omniglot_small1_imports_through_the_service(artifacts_in_tmp):
    # given the first minimal Omniglot background split
    source = OMNIGLOT / "images_background_small1.zip"

    # when it is imported
    domain = domain_import(source=str(source), name="Omniglot small 1", license="MIT")

    # then the counts are exact and the classes are "<alphabet>/<character>" in label order
    assert (domain.class_count, domain.example_count) == (136, 2720)
    assert domain.slug == "omniglot-small-1"
    assert domain.origin == SourceDomain.Origin.UPLOAD
    assert domain.modality == SourceDomain.Modality.IMAGE_CLASSIFICATION
    assert [g["name"] for g in domain.class_groups] == SMALL1_GROUPS
    assert {g["name"]: g["class_count"] for g in domain.class_groups} == {
        "Balinese": 24,
        "Early_Aramaic": 22,
        "Greek": 24,
        "Korean": 40,
        "Latin": 26,
    }
    assert domain.classes[0] == {"name": "Balinese/character01", "group": "Balinese", "count": 20}
    assert all(c["count"] == 20 for c in domain.classes)
    # and the stored arrays round-trip, ink high (thin strokes: mostly background)
    assert domain.arrays_file == "domains/omniglot-small-1/arrays.npz"
    payload = artifact_read(domain.arrays_file)
    assert domain.arrays_size == len(payload)
    arrays = load_image_arrays(io.BytesIO(payload))
    assert arrays.images.shape == (2720, 28, 28)
    assert arrays.images.dtype == np.uint8
    assert arrays.class_names == tuple(c["name"] for c in domain.classes)
    assert arrays.groups == tuple(SMALL1_GROUPS)
    assert arrays.images.mean() < 60
    assert arrays.images.max() == 255
    assert np.median(arrays.images[:, 0, :]) == 0  # the border is background, i.e. low
    # and every class has a thumbnail, ink dark on light like the original
    thumbs = artifacts_in_tmp / "domains" / "omniglot-small-1" / "thumbs"
    assert len(list(thumbs.glob("*.png"))) == 136
    thumb = np.asarray(Image.open(thumbs / "0.png"))
    assert thumb.shape == (56, 56)
    assert thumb.mean() > 128


@pytest.mark.slow
def test_omniglot_small2_imports_through_the_command(artifacts_in_tmp, user):
    # given the second minimal Omniglot background split
    source = OMNIGLOT / "images_background_small2.zip"
    out = io.StringIO()

    # when the command imports it for a user, privately
    call_command(
        "import_domain", str(source), "--name", "Omniglot small 2", "--owner", "ada", "--private", stdout=out
    )

    # then it prints and stores the exact counts
    domain = SourceDomain.objects.get(slug="omniglot-small-2")
    text = out.getvalue()
    assert "156 classes, 5 groups, 3120 images" in text
    assert domain.content_sha256 in text
    assert (domain.class_count, domain.example_count) == (156, 3120)
    assert [g["name"] for g in domain.class_groups] == [
        "Greek",
        "Japanese_(katakana)",
        "Latin",
        "Sanskrit",
        "Tagalog",
    ]
    assert (domain.owner, domain.visibility) == (user, "private")
    assert len(stored_files(artifacts_in_tmp)) == 1 + 156


# --- Other sources and layouts ---------------------------------------------------------


def test_a_folder_with_a_wrapper_and_groups_imports(tmp_path):
    # given a folder images/<group>/<class>/<image> with junk beside the images
    root = make_image_folder(tmp_path / "set" / "images", {"greek/alpha": 2, "greek/beta": 3, "latin/a": 2})
    (root / "greek" / ".DS_Store").write_bytes(b"junk")
    (root / "Thumbs.db").write_bytes(b"junk")

    # when the folder above the wrapper is imported
    domain = domain_import(source=tmp_path / "set", name="Folder set")

    # then the wrapper is skipped, the junk ignored and classes named "<group>/<class>"
    assert [c["name"] for c in domain.classes] == ["greek/alpha", "greek/beta", "latin/a"]
    assert domain.class_groups == [{"name": "greek", "class_count": 2}, {"name": "latin", "class_count": 1}]
    assert domain.example_count == 7


def test_an_ungrouped_zip_with_junk_imports(tmp_path, artifacts_in_tmp):
    # given a zip of class folders with macOS and Windows junk
    junk = {"__MACOSX/a/._0.png": b"junk", "a/.DS_Store": b"junk", "b/Thumbs.db": b"junk"}
    archive = make_image_zip(tmp_path / "x.zip", {"a": 2, "b": 3}, extra=junk)

    # when it is imported
    domain = domain_import(source=archive, name="Letters", description="two letters")

    # then there are no groups and one thumbnail per class
    assert domain.classes == [{"name": "a", "group": "", "count": 2}, {"name": "b", "group": "", "count": 3}]
    assert domain.class_groups == []
    assert sorted(p.name for p in stored_files(artifacts_in_tmp)) == ["0.png", "1.png", "arrays.npz"]


def test_an_uploaded_zip_imports(tmp_path, user):
    # given an uploaded zip
    archive = make_image_zip(tmp_path, {"a": 2, "b": 2}, groups=True)
    upload = SimpleUploadedFile("letters.zip", archive.read_bytes(), content_type="application/zip")

    # when it is imported
    domain = domain_import(source=upload, name="Uploaded", owner=user, visibility="private")

    # then it is the user's private upload, grouped
    assert (domain.origin, domain.owner, domain.visibility) == ("upload", user, "private")
    assert [g["name"] for g in domain.class_groups] == ["group-a", "group-b"]


def test_an_import_reports_each_image_decoded(tmp_path):
    # given a zip of 2 classes x 3 images plus junk, and a callback that notes its calls
    archive = make_image_zip(tmp_path, {"a": 3, "b": 3}, extra={"__MACOSX/a/._0.png": b"junk"})
    calls = []

    # when it is imported with the callback
    domain_import(source=archive, name="Counted", on_progress=lambda done, total: calls.append((done, total)))

    # then it heard of 0 to 6 of the 6 image files, in order
    assert calls == [(i, 6) for i in range(7)]


def test_an_import_asked_to_stop_stops_before_storing_anything(tmp_path, artifacts_in_tmp):
    # given a zip of 6 images, and a stop check that turns true after 2 images were decoded
    archive = make_image_zip(tmp_path, {"a": 3, "b": 3})
    decoded = []

    # when it is imported
    with pytest.raises(ImportStopped) as caught:
        domain_import(
            source=archive,
            name="Stopped",
            on_progress=lambda done, total: decoded.append(done),
            should_stop=lambda: len(decoded) > 2,
        )

    # then it stopped at the third image and wrote nothing
    assert (caught.value.done, caught.value.total) == (2, 6)
    assert_nothing_written(artifacts_in_tmp, 0)


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A local HTTP server for files in ``tmp_path / "www"``, let past the URL check; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    allow_local(monkeypatch, server.server_address[1])
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_imports(http_folder):
    # given a zip served over HTTP
    www, base = http_folder
    make_image_zip(www / "set.zip", {"a": 2, "b": 2})

    # when it is imported from its URL
    domain = domain_import(source=f"{base}/set.zip", name="From the web")

    # then the domain remembers where it came from
    assert (domain.origin, domain.source_url) == ("url", f"{base}/set.zip")
    assert domain.example_count == 4


def test_light_and_dark_paper_both_give_ink_high():
    # given the same strokes drawn dark on white and light on black
    dark, light = png_bytes(5, ink="dark"), png_bytes(5, ink="light")

    # when both are normalized
    from_dark = normalize_image(dark, name="dark.png")
    from_light = normalize_image(light, name="light.png")

    # then both are 28x28 uint8 with the ink high and the background low
    assert from_dark.shape == from_light.shape == (28, 28)
    assert from_dark.dtype == np.uint8
    assert np.abs(from_dark.astype(int) - from_light.astype(int)).max() <= 1
    assert from_dark.max() > 200
    assert from_dark[0].max() == 0
    assert from_dark.mean() < 80


def test_colour_and_transparent_images_are_read():
    # given a colour JPEG of dark ink on white, and a PNG of black ink on a transparent background
    jpeg, rgba = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (30, 40), (250, 250, 240)).save(jpeg, format="JPEG")
    ink = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    ink.paste((0, 0, 0, 255), (10, 0, 20, 30))
    ink.save(rgba, format="PNG")

    # when they are normalized
    paper = normalize_image(jpeg.getvalue(), name="paper.jpg")
    bar = normalize_image(rgba.getvalue(), name="bar.png")

    # then blank paper is all background, and the bar is ink on the transparent (white) background
    assert paper.max() <= 10
    assert bar[:, 14].min() > 200
    assert bar[:, 0].max() < 20


# --- Bad input: an error naming the problem, and nothing written ----------------------


def _zip_bytes(entries: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _good(*classes: str, n: int = 2) -> dict[str, bytes]:
    names = [f"{c}/{i}.png" for c in classes for i in range(n)]
    return {name: png_bytes(seed) for seed, name in enumerate(names)}


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in _good("a", "b").items():
            archive.writestr(name, content)
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def _empty_class_zip() -> bytes:
    return _zip_bytes({**_good("a", "b"), "c/": b""})


def _lying_header_zip() -> bytes:
    """A zip whose headers declare 10 bytes for a 200,000-byte entry."""
    data = bytearray(_zip_bytes({**_good("a", "b"), "a/big.png": b"\0" * 200_000}))
    name = b"a/big.png"
    real = struct.pack("<I", 200_000)
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (at := data.find(signature, start)) != -1:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                assert data[at + size_offset : at + size_offset + 4] == real
                data[at + size_offset : at + size_offset + 4] = struct.pack("<I", 10)
            start = at + 1
    return bytes(data)


BAD_ZIPS = {
    "not a zip": (lambda: b"just some text", "not a zip archive"),
    "a non-image file": (
        lambda: _zip_bytes({**_good("a", "b"), "a/notes.txt": b"hello"}),
        "a/notes.txt is not an image",
    ),
    "a truncated image": (lambda: _zip_bytes({**_good("a", "b"), "b/9.png": png_bytes(1)[:-30]}), "b/9.png"),
    "a parent path": (lambda: _zip_bytes({**_good("a", "b"), "../x.png": png_bytes(1)}), "../x.png"),
    "a nested parent path": (
        lambda: _zip_bytes({**_good("a", "b"), "a/../../x.png": png_bytes(1)}),
        "outside",
    ),
    "an absolute path": (lambda: _zip_bytes({**_good("a", "b"), "/tmp/x.png": png_bytes(1)}), "absolute"),
    "a drive path": (lambda: _zip_bytes({**_good("a", "b"), "C:/x.png": png_bytes(1)}), "absolute"),
    "a symlink": (_symlink_zip, "a/link.png is a symbolic link"),
    "one class": (lambda: _zip_bytes(_good("a")), "at least 2 classes"),
    "an empty class": (_empty_class_zip, "class c has no images"),
    "loose images": (lambda: _zip_bytes({**_good("a", "b"), "x.png": png_bytes(1)}), "x.png is not inside"),
    "mixed depths": (lambda: _zip_bytes({**_good("a", "g/b")}), "mixed layout"),
    "too deep": (lambda: _zip_bytes(_good("x/a/b", "y/a/b")), "nested too deeply"),
    "no images": (lambda: _zip_bytes({"a/": b"", "__MACOSX/x": b"junk"}), "no image files"),
    "a lying header": (_lying_header_zip, "big.png"),
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_a_bad_zip_is_refused_and_nothing_is_written(case, tmp_path, artifacts_in_tmp):
    # given a broken archive
    build, expected = BAD_ZIPS[case]
    archive = tmp_path / "bad.zip"
    archive.write_bytes(build())
    before = SourceDomain.objects.count()

    # when it is imported
    with pytest.raises(InvalidInput) as caught:
        domain_import(source=archive, name="Bad")

    # then the error names the problem and nothing was written
    assert expected in caught.value.message
    assert caught.value.field == "source"
    assert_nothing_written(artifacts_in_tmp, before)


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("IMPORT_MAX_BYTES", 1000, "the limit is 1,000"),
        ("IMPORT_MAX_FILES", 5, "the limit is 5"),
        ("IMPORT_MAX_EXPANSION", 2.0, "at most 2x its size"),
        ("IMPORT_MAX_UNCOMPRESSED_BYTES", 50_000, "50,000 bytes"),
    ],
)
def test_an_archive_over_a_limit_is_refused(settings, tmp_path, artifacts_in_tmp, setting, value, expected):
    # given a limit, and an archive of two classes plus a highly compressible 100 kB image
    setattr(settings, setting, value)
    blank = io.BytesIO()
    Image.new("L", (400, 250), 255).save(blank, format="BMP")
    archive = tmp_path / "big.zip"
    archive.write_bytes(_zip_bytes({**_good("a", "b", n=3), "a/blank.bmp": blank.getvalue()}))
    before = SourceDomain.objects.count()

    # when it is imported
    with pytest.raises(InvalidInput) as caught:
        domain_import(source=archive, name="Too big")

    # then the limit is named and nothing was written
    assert expected in caught.value.message
    assert_nothing_written(artifacts_in_tmp, before)


class _FakeArchive:
    """Stands for a zip library that would hand out more bytes than the header declares."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def open(self, info):
        return io.BytesIO(self.data)


def test_the_real_bytes_are_counted_while_reading():
    # given an entry declaring 10 bytes, and one declaring 1,000 bytes against a 50-byte cap
    small = zipfile.ZipInfo("a/small.png")
    small.file_size = 10
    large = zipfile.ZipInfo("a/large.png")
    large.file_size = 1000

    # when more bytes come out than the header or the cap allow, then reading stops with an error
    with pytest.raises(InvalidInput, match=r"a/small\.png holds more bytes than its header declares"):
        _ByteCounter(10**6).read_entry(_FakeArchive(b"x" * 100), small)
    with pytest.raises(InvalidInput, match="zip bomb"):
        _ByteCounter(50).read_entry(_FakeArchive(b"x" * 100), large)


def test_a_folder_with_a_symlink_or_an_empty_class_is_refused(tmp_path, artifacts_in_tmp):
    # given a good folder, then one with a symlink to a file outside, then one with an empty class
    linked = make_image_folder(tmp_path / "linked", {"a": 2, "b": 2})
    (tmp_path / "secret.png").write_bytes(png_bytes(7))
    (linked / "a" / "x.png").symlink_to(tmp_path / "secret.png")
    empty = make_image_folder(tmp_path / "empty", {"a": 2, "b": 2})
    (empty / "c").mkdir()

    # when they are imported, then each is refused by name, and nothing was written
    with pytest.raises(InvalidInput, match=r"a/x\.png is a symbolic link"):
        domain_import(source=linked, name="Linked")
    with pytest.raises(InvalidInput, match="class c has no images"):
        domain_import(source=empty, name="Empty")
    with pytest.raises(InvalidInput, match="neither a zip file nor a folder"):
        domain_import(source=tmp_path / "missing", name="Missing")
    assert_nothing_written(artifacts_in_tmp, 0)


def test_bad_urls_are_refused(http_folder, settings, artifacts_in_tmp):
    # given a server with one zip over the byte limit
    www, base = http_folder
    make_image_zip(www / "set.zip", {"a": 2, "b": 2})
    settings.IMPORT_MAX_BYTES = 500

    # when a missing file, a non-http scheme or a too-large file is imported, then each is refused
    with pytest.raises(InvalidInput, match="could not download"):
        domain_import(source=f"{base}/missing.zip", name="Missing")
    with pytest.raises(InvalidInput, match="not an http or https URL"):
        domain_import(source="ftp://example.org/set.zip", name="Ftp")
    with pytest.raises(InvalidInput, match="the limit is 500"):
        domain_import(source=f"{base}/set.zip", name="Too big")
    assert_nothing_written(artifacts_in_tmp, 0)


def test_duplicate_content_names_the_existing_domain(tmp_path, artifacts_in_tmp):
    # given an imported domain
    archive = make_image_zip(tmp_path, {"a": 2, "b": 2})
    first = domain_import(source=archive, name="First")
    files = stored_files(artifacts_in_tmp)

    # when the same images are imported under another name
    with pytest.raises(InvalidInput) as caught:
        domain_import(source=archive, name="Second")

    # then the error names the first domain, and nothing more was written
    assert "'First'" in caught.value.message
    assert caught.value.field == "source"
    assert SourceDomain.objects.get() == first
    assert stored_files(artifacts_in_tmp) == files


@pytest.mark.parametrize(
    ("name", "expected"),
    [("taken", "already exists"), ("TAKEN", "already exists"), ("  ", "needs a name"), ("!!!", "letter")],
)
def test_a_bad_name_is_refused(tmp_path, artifacts_in_tmp, name, expected):
    # given a domain named "taken"
    image_domain(name="taken")
    files = stored_files(artifacts_in_tmp)
    archive = make_image_zip(tmp_path / "x.zip", {"a": 2, "b": 2}, variant=99)

    # when new images are imported under a bad name
    with pytest.raises(InvalidInput) as caught:
        domain_import(source=archive, name=name)

    # then the name is blamed and nothing more was written
    assert expected in caught.value.message
    assert caught.value.field == "name"
    assert SourceDomain.objects.count() == 1
    assert stored_files(artifacts_in_tmp) == files


def test_a_failure_after_storing_files_removes_them(tmp_path, artifacts_in_tmp, monkeypatch):
    # given a database write that fails after the arrays and thumbnails were stored
    archive = make_image_zip(tmp_path, {"a": 2, "b": 2})

    def fail(**kwargs):
        assert len(stored_files(artifacts_in_tmp)) == 3
        raise RuntimeError("database down")

    monkeypatch.setattr(SourceDomain.objects, "create", fail)

    # when the import runs
    with pytest.raises(RuntimeError, match="database down"):
        domain_import(source=archive, name="Doomed")

    # then the stored files are gone again, and a retry gets the plain slug
    assert_nothing_written(artifacts_in_tmp, 0)
    monkeypatch.undo()
    assert domain_import(source=archive, name="Doomed").slug == "doomed"


def test_a_slug_held_by_stray_files_is_not_reused(tmp_path, artifacts_in_tmp):
    # given files left under domains/letters/ by a domain deleted earlier
    artifact_storage().save("domains/letters/arrays.npz", io.BytesIO(b"old"))

    # when a domain named "Letters" is imported
    domain = domain_import(source=make_image_zip(tmp_path, {"a": 2, "b": 2}), name="Letters")

    # then it gets a fresh slug and its own files
    assert domain.slug == "letters-2"
    assert domain.arrays_file == "domains/letters-2/arrays.npz"


def test_the_command_turns_bad_input_into_a_command_error(tmp_path, artifacts_in_tmp):
    # given a zip with one class only
    archive = tmp_path / "one.zip"
    archive.write_bytes(_zip_bytes(_good("a")))

    # when the command imports it, or names an unknown owner, then it fails with the reason
    with pytest.raises(CommandError, match="at least 2 classes"):
        call_command("import_domain", str(archive), "--name", "One", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("import_domain", str(archive), "--name", "One", "--owner", "nobody")
    assert_nothing_written(artifacts_in_tmp, 0)


@pytest.mark.django_db
def test_a_domain_named_new_does_not_hide_behind_the_upload_page(tmp_path):
    # given a zip of two classes / when it is imported under the name "New"
    from learning.services.domains import domain_import

    domain = domain_import(source=make_image_zip(tmp_path / "new.zip", {"a": 3, "b": 3}), name="New")

    # then its slug leaves /domains/new/ to the upload form
    assert domain.slug == "new-2"
