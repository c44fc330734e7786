"""Heavy request work runs in a bounded pool with a deadline: a full pool answers 503 with
Retry-After, a computation past its deadline stops and answers 504, and images are bounded
before they are decoded. (A real daphne under load: ``test_heavy_work_server.py``.)"""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageDraw, ImageFile

from learning import domain_layout, heavy_work, images
from learning import predict as learning_predict
from learning.engine.model_configs import EVAL_INNER_STEPS
from learning.models import MetaModel, SourceDomain
from learning.services.models import metamodel_register
from tests.learning.factories import make_image_zip
from tests.learning.test_predict_api import LABELS, image, register, task, url
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_slot(settings):
    """One slot, and a short wait for it, so that a held slot means a refusal."""
    settings.HEAVY_WORK_SLOTS = 1
    settings.HEAVY_WORK_WAIT_S = 0.2
    return settings


class HeldSlot:
    """A slot of the pool taken by another thread until ``release()``."""

    def __init__(self) -> None:
        self.taken, self._release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=heavy_work.run_heavy, args=(self._hold,), daemon=True)
        self.thread.start()
        assert self.taken.wait(10), "the holder never got its slot"

    def _hold(self) -> None:
        self.taken.set()
        self._release.wait(30)

    def release(self) -> None:
        self._release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def slow_maml(owner, *, hidden: int = 128) -> MetaModel:
    """A 5-way MAML model that is slow to use but within the bounds a weights file may have: a
    wide Conv4 (``hidden`` channels) that adapts with the most inner steps allowed (100).

    On 100 support images (20 shots) one inner step takes about 0.5 s on two CPU cores with
    128 channels, about 2 s with 256: each step is short, so a stop comes soon, but all 100
    take many times the deadlines of these tests."""
    adapt = {"inner_lr": 0.4, "inner_steps": EVAL_INNER_STEPS.maximum}
    return metamodel_register(
        name="maml with many steps",
        algorithm="maml",
        architecture="conv4",
        weights=model_weights("maml", hidden=hidden, adapt=adapt),
        owner=owner,
    )


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grayscale pixels but holds no pixel data at all."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def stroke(size: int, fmt: str = "PNG", *, seed: int = 0) -> bytes:
    """A ``size`` x ``size`` drawing of thick dark strokes on white, the same picture at any size."""
    rng = np.random.default_rng(seed)
    picture = Image.new("L", (size, size), 255)
    points = [tuple(int(v * size) for v in rng.uniform(0.15, 0.85, 2)) for _ in range(4)]
    ImageDraw.Draw(picture).line(points, fill=0, width=max(1, size // 12))
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


# --- A full pool -----------------------------------------------------------------------------


def test_a_predict_request_is_503_with_retry_after_while_the_only_slot_is_taken(one_slot, user, user_client):
    # given a ProtoNet, and the pool's only slot held by another computation
    model = register("protonet", owner=user)
    held = HeldSlot()

    # when a predict request comes
    try:
        refused = user_client.post(url(model), task(queries=1), format="multipart")
    finally:
        held.release()

    # then it is a 503 that says why and when to come back, not a stall
    assert refused.status_code == 503, refused.content
    assert refused["Retry-After"] == str(heavy_work.RETRY_AFTER_S)
    body = refused.json()
    assert body["code"] == "busy"
    assert "busy" in body["detail"] and "0.2 s" in body["detail"]

    # and once the slot is free, the same request is answered
    answered = user_client.post(url(model), task(queries=1), format="multipart")
    assert answered.status_code == 200, answered.content


def test_a_waiting_request_gets_the_slot_as_it_frees_and_one_beyond_the_queue_is_refused_at_once(one_slot):
    # given one slot, held, and room for one waiting request that may wait long
    one_slot.HEAVY_WORK_QUEUE = 1
    one_slot.HEAVY_WORK_WAIT_S = 30
    held = HeldSlot()
    results: list[str] = []
    waiter = threading.Thread(target=lambda: results.append(heavy_work.run_heavy(lambda: "waited")))
    waiter.start()
    deadline = time.monotonic() + 10
    while heavy_work._pool()._waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    # when a third request comes while the slot is held and the queue is full
    started = time.monotonic()
    with pytest.raises(heavy_work.Busy, match="1 requests are waiting") as refused:
        heavy_work.run_heavy(lambda: "never")
    refused_after = time.monotonic() - started
    held.release()
    waiter.join(10)

    # then it was refused without waiting its 30 s, and the waiting one ran once the slot was free
    assert refused_after < 10
    assert refused.value.headers == {"Retry-After": str(heavy_work.RETRY_AFTER_S)}
    assert results == ["waited"]


def test_the_try_it_page_shows_a_busy_server_with_a_503(one_slot, client, user):
    # given a ProtoNet and the only slot held
    model = register("protonet", owner=user)
    form = {f"label_{i}": LABELS[i] for i in range(2)}
    form.update({f"support_{i}": [image(i)] for i in range(2)})
    form["query"] = [image(900)]
    held = HeldSlot()

    # when the "Try it" form is posted
    try:
        response = client.post(f"/models/{model.pk}/try/", form)
    finally:
        held.release()

    # then the page says the server is busy, with a 503 and Retry-After
    assert response.status_code == 503
    assert response["Retry-After"] == str(heavy_work.RETRY_AFTER_S)
    assert "the server is busy" in response.content.decode()


def test_a_domain_upload_waits_its_turn_in_the_pool_too(one_slot, user_client, tmp_path):
    # given the only slot held
    archive = make_image_zip(tmp_path / "images.zip", {"a": 2, "b": 2})
    held = HeldSlot()

    # when a zip is uploaded through the API
    try:
        response = user_client.post(
            "/api/v1/domains/",
            {"name": "Busy", "file": SimpleUploadedFile("images.zip", archive.read_bytes())},
            format="multipart",
        )
    finally:
        held.release()

    # then it is refused with a 503, and nothing was imported
    assert response.status_code == 503 and response.json()["code"] == "busy"
    assert not SourceDomain.objects.filter(name="Busy").exists()


# --- Deadlines -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_prediction_past_its_deadline_stops_and_answers_504(one_slot, user, user_client, monkeypatch):
    # given a MAML model that adapts a wide net for 100 inner steps (many seconds on 100 support
    # images), a 1 s deadline, and a count of the stop polls (one first, then one per inner step)
    one_slot.HEAVY_WORK_DEADLINE_S = 1
    model = slow_maml(user)
    polls: list[bool] = []

    def counted_should_stop() -> bool:
        polls.append(heavy_work.should_stop())
        return polls[-1]

    monkeypatch.setattr(learning_predict, "should_stop", counted_should_stop)

    # when a prediction is asked of it with 20 shots of each of the 5 labels
    started = time.monotonic()
    response = user_client.post(url(model), task(shots=20, queries=1), format="multipart")
    took = time.monotonic() - started

    # then it was stopped at its deadline (the test client runs the view in this thread, so the
    # computation has ended) before all its inner steps were done, and the answer names the deadline
    assert response.status_code == 504, response.content
    body = response.json()
    assert body["code"] == "deadline_exceeded"
    assert "1 s deadline" in body["detail"]
    assert polls[-1] is True
    assert polls.count(False) < 1 + EVAL_INNER_STEPS.maximum
    assert took < 30
    # and its slot is free again at once
    one_slot.HEAVY_WORK_WAIT_S = 0
    assert heavy_work.run_heavy(lambda: "free") == "free"


def test_a_domain_import_past_its_deadline_stops_between_images(
    one_slot, client, user, tmp_path, monkeypatch
):
    # given a zip of 12 images whose decoding takes 0.1 s each, and a 0.25 s import deadline
    one_slot.HEAVY_WORK_IMPORT_DEADLINE_S = 0.25
    archive = make_image_zip(tmp_path / "images.zip", {"a": 6, "b": 6})
    decoded: list[str] = []
    normalize = images.normalize_image

    def slow_normalize(data: bytes, *, name: str) -> np.ndarray:
        decoded.append(name)
        time.sleep(0.1)
        return normalize(data, name=name)

    monkeypatch.setattr(domain_layout, "normalize_image", slow_normalize)

    # when it is uploaded through the page
    client.force_login(user)
    response = client.post(
        reverse("domain-upload"),
        {
            "name": "Slow",
            "source": SimpleUploadedFile("images.zip", archive.read_bytes()),
            "visibility": "public",
        },
    )

    # then the import stopped after a few images with a 504 that names the deadline, storing nothing
    assert response.status_code == 504
    assert "0.25 s deadline" in response.content.decode()
    assert 1 <= len(decoded) < 12
    assert not SourceDomain.objects.filter(name="Slow").exists()


# --- Image sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (5000, 5000, "query[1] huge.png: image is 5000x5000 pixels, at most 16,777,216 allowed"),
        (20000, 20000, "query[1] huge.png: image is too large, at most 16,777,216 pixels allowed"),
    ],
)
def test_an_image_declaring_too_many_pixels_is_400_before_it_is_decoded(
    width, height, message, user, user_client, monkeypatch
):
    # given a tiny file whose header declares a huge image, and a record of every decoded size
    model = register("protonet", owner=user)
    huge = SimpleUploadedFile("huge.png", png_header(width, height), content_type="image/png")
    assert len(huge) < 100
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or load(self))

    # when it is sent as the second query
    response = user_client.post(
        url(model), {**task(queries=1), "query": [image(9000), huge]}, format="multipart"
    )

    # then it is a 400 naming the field, the index and the file, and the huge image was never decoded
    assert response.status_code == 400, response.content
    assert message in response.json()["query"][0]
    assert decoded and all(w * h <= images.MAX_IMAGE_PIXELS for w, h in decoded)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_large_image_is_shrunk_while_decoding_to_what_a_full_decode_gives(fmt, monkeypatch):
    # given a 3000x3000 drawing, and a record of the sizes decoded and of the reductions
    data = stroke(3000, fmt)
    decoded: list[tuple[int, int]] = []
    reduced: list[tuple[int, int]] = []
    load, reduce = ImageFile.ImageFile.load, Image.Image.reduce
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or load(self))
    monkeypatch.setattr(
        Image.Image,
        "reduce",
        lambda self, factor, box=None: reduced.append(self.size) or reduce(self, factor, box),
    )

    # when it is normalized
    shrunk = images.normalize_image(data, name="big")

    # then a JPEG was decoded at 1/8 scale and a PNG reduced right after decoding, and the
    # result matches the full-size Lanczos resize to within a few gray levels
    if fmt == "JPEG":
        assert set(decoded) == {(375, 375)} and reduced == [(375, 375)]
    else:
        assert set(decoded) == {(3000, 3000)} and reduced == [(3000, 3000)]
    with Image.open(io.BytesIO(data)) as full:
        reference = 255 - np.asarray(full.convert("L").resize((28, 28), Image.LANCZOS), dtype=np.float64)
    assert shrunk.shape == (28, 28)
    assert np.abs(shrunk - reference).mean() < 2


def test_a_large_allowed_image_predicts_like_its_small_version(user, user_client):
    # given a ProtoNet, and one drawing as a 112x112 PNG and as a 2800x2800 PNG
    model = register("protonet", owner=user)
    small = SimpleUploadedFile("small.png", stroke(112, seed=3), content_type="image/png")
    large = SimpleUploadedFile("large.png", stroke(2800, seed=3), content_type="image/png")
    assert len(large) < 1024 * 1024

    # when both are sent as queries
    response = user_client.post(url(model), {**task(queries=1), "query": [small, large]}, format="multipart")

    # then both are accepted and get the same label with nearly the same probabilities
    assert response.status_code == 200, response.content
    first, second = response.json()["predictions"]
    assert first["label"] == second["label"]
    assert max(abs(first["probabilities"][k] - second["probabilities"][k]) for k in LABELS) < 0.1
