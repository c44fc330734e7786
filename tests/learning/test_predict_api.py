"""POST /api/v1/models/{id}/predict/: answers in query order, scoped to who may see the model, and
every bad input is a 400 that names the problem and stores nothing."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from learning.engine.weights import weights_to_bytes
from learning.models import Evaluation, MetaModel, SourceDomain, Visibility
from learning.services.models import metamodel_register
from tests.engine.test_predict import tiny_model
from tests.learning.factories import png_bytes

pytestmark = pytest.mark.django_db

LABELS = ["zero", "one", "two", "three", "four"]


def register(algorithm: str, domain: str = "image", *, owner=None, visibility=Visibility.PUBLIC) -> MetaModel:
    """A catalog model with the weights of a real tiny model (trained once per session)."""
    result = tiny_model(algorithm, domain)
    return metamodel_register(
        name=f"tiny {algorithm} ({domain})",
        algorithm=result.algorithm,
        architecture=result.model_config["arch"],
        weights=weights_to_bytes(result.weights, result.model_config, result.algorithm),
        owner=owner,
        visibility=visibility,
    )


def url(model: MetaModel) -> str:
    return f"/api/v1/models/{model.pk}/predict/"


def image(seed: int, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or f"img-{seed}.png", png_bytes(seed), content_type="image/png")


def task(ways: int = 5, shots: int = 1, queries: int = 3) -> dict:
    """A multipart classification request: ``ways`` labels x ``shots`` images, and ``queries`` queries."""
    return {
        "support": [image(w * 100 + s) for w in range(ways) for s in range(shots)],
        "support_labels": [LABELS[w] for w in range(ways) for _ in range(shots)],
        "query": [image(9000 + q, f"query-{q}.png") for q in range(queries)],
    }


def points(**changes) -> str:
    body = {"support": {"x": [-1.0, 0.0, 1.0], "y": [0.2, -0.1, 0.4]}, "query": {"x": [-0.5, 0.5]}}
    body.update(changes)
    return json.dumps(body)


@functools.cache
def big_png() -> bytes:
    """A valid PNG over 1 MiB (random RGB pixels do not compress)."""
    pixels = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 1024 * 1024
    return buffer.getvalue()


def counts(artifacts) -> tuple[int, ...]:
    files = sum(1 for p in artifacts.rglob("*") if p.is_file()) if artifacts.exists() else 0
    return MetaModel.objects.count(), Evaluation.objects.count(), SourceDomain.objects.count(), files


# --- Answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["protonet", "maml", "siamese"])
def test_an_image_model_labels_each_query_with_probabilities(algorithm, user_client, user, artifacts_in_tmp):
    # given a tiny 5-way model of ada's, and nothing stored beyond it
    model = register(algorithm, owner=user)
    before = counts(artifacts_in_tmp)

    # when she sends 5 labeled support images and 3 queries
    response = user_client.post(url(model), task(), format="multipart")

    # then each query, in order, gets a label and probabilities over the 5 labels that sum to 1
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["task"] == "classification" and body["labels"] == LABELS
    assert [p["query"] for p in body["predictions"]] == ["query-0.png", "query-1.png", "query-2.png"]
    for prediction in body["predictions"]:
        probabilities = prediction["probabilities"]
        assert list(probabilities) == LABELS
        assert abs(sum(probabilities.values()) - 1.0) < 1e-6
        assert prediction["label"] == max(probabilities, key=probabilities.get)
    # and nothing was written
    assert counts(artifacts_in_tmp) == before


def test_several_shots_per_label_are_grouped_by_label(user_client, user):
    model = register("protonet", owner=user)
    response = user_client.post(url(model), task(ways=3, shots=2, queries=1), format="multipart")
    assert response.status_code == 200, response.json()
    assert response.json()["labels"] == LABELS[:3]


def test_a_cnp_answers_a_mean_and_a_positive_std_per_query_point(api_client):
    # given a public CNP
    model = register("cnp", "function")

    # when an anonymous client sends three support points and two query points
    response = api_client.post(url(model), points(), content_type="application/json")

    # then both points get a mean and a positive std, in query order
    assert response.status_code == 200, response.json()
    predictions = response.json()["predictions"]
    assert [p["x"] for p in predictions] == [-0.5, 0.5]
    assert all(isinstance(p["mean"], float) and p["std"] > 0 for p in predictions)


def test_maml_on_functions_answers_the_adapted_mean_and_a_null_std(api_client):
    model = register("maml", "function")
    response = api_client.post(url(model), points(), content_type="application/json")
    assert response.status_code == 200, response.json()
    assert [p["std"] for p in response.json()["predictions"]] == [None, None]


# --- Who may ask -----------------------------------------------------------------------------


def test_a_private_model_answers_its_owner_only(user, user_client, stranger_client, api_client):
    model = register("protonet", owner=user, visibility=Visibility.PRIVATE)
    assert user_client.post(url(model), task(queries=1), format="multipart").status_code == 200
    assert stranger_client.post(url(model), task(queries=1), format="multipart").status_code == 404
    assert api_client.post(url(model), task(queries=1), format="multipart").status_code == 404


def test_a_public_model_answers_anyone(user, stranger_client, api_client):
    model = register("protonet", owner=user)
    assert stranger_client.post(url(model), task(queries=1), format="multipart").status_code == 200
    assert api_client.post(url(model), task(queries=1), format="multipart").status_code == 200


def test_an_unknown_model_is_404(api_client):
    assert api_client.post("/api/v1/models/999999/predict/", task(), format="multipart").status_code == 404


# --- Bad input -------------------------------------------------------------------------------


def _with(**changes) -> dict:
    request = task()
    for key, value in changes.items():
        if value is None:
            request.pop(key)
        else:
            request[key] = value
    return request


IMAGE_CASES = {
    "too many support images": (
        lambda: {
            "support": [image(n) for n in range(101)],
            "support_labels": [LABELS[n % 5] for n in range(101)],
            "query": [image(9000)],
        },
        "support",
        "at most 100 support images",
    ),
    "too many query images": (lambda: _with(query=[image(n) for n in range(501)]), "query", "at most 500"),
    "a non-image": (
        lambda: _with(query=[SimpleUploadedFile("notes.txt", b"not an image at all")]),
        "query",
        "notes.txt is not an image",
    ),
    "an oversized image": (
        lambda: _with(support=[SimpleUploadedFile("big.png", big_png()), *task()["support"][1:]]),
        "support",
        "big.png is larger than 1024 KiB",
    ),
    "one label only": (lambda: _with(support_labels=["zero"] * 5), "support_labels", "at least 2 distinct"),
    "fewer labels than images": (
        lambda: _with(support_labels=LABELS[:4]),
        "support_labels",
        "4 labels for 5 support images",
    ),
    "no support": (lambda: _with(support=None, support_labels=None), "support", "at least 2 support"),
    "no query": (lambda: _with(query=None), "query", "at least one query"),
    "no labels": (lambda: _with(support_labels=None), "support_labels", "0 labels for 5"),
    "an empty label": (lambda: _with(support_labels=[*LABELS[:4], " "]), "support_labels", "non-empty"),
}


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_bad_image_requests_are_400_and_store_nothing(case, user, user_client, settings, artifacts_in_tmp):
    # given a ProtoNet, and room in Django's multipart limits for the item-count checks
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1000
    model = register("protonet", owner=user)
    make, field, message = IMAGE_CASES[case]
    before = counts(artifacts_in_tmp)

    # when the bad request is sent
    response = user_client.post(url(model), make(), format="multipart")

    # then it is a 400 whose message names the problem, and nothing was stored
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()[field])
    assert counts(artifacts_in_tmp) == before


def test_more_files_than_django_reads_is_a_400_with_a_message(user, user_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 10
    model = register("protonet", owner=user)
    response = user_client.post(url(model), task(queries=10), format="multipart")
    assert response.status_code == 400
    assert "too many files" in response.json()["non_field_errors"][0]


def test_a_maml_model_needs_the_n_way_it_was_trained_with(user, user_client, artifacts_in_tmp):
    # given a 5-way MAML model
    model = register("maml", owner=user)
    before = counts(artifacts_in_tmp)

    # when a 3-way support set is sent
    response = user_client.post(url(model), task(ways=3), format="multipart")

    # then the 400 says why
    assert response.status_code == 400
    assert "trained 5-way" in response.json()["support_labels"][0]
    assert "exactly 5 distinct labels, got 3" in response.json()["support_labels"][0]
    assert counts(artifacts_in_tmp) == before


def test_json_for_an_image_model_is_a_400(user, user_client):
    model = register("protonet", owner=user)
    response = user_client.post(url(model), points(), content_type="application/json")
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["non_field_errors"][0]


POINT_CASES = {
    "NaN": ('{"support": {"x": [0, NaN], "y": [1, 2]}, "query": {"x": [0]}}', "detail", "NaN"),
    "infinity from a huge number": (
        '{"support": {"x": [0, 1e999], "y": [1, 2]}, "query": {"x": [0]}}',
        "support",
        "finite",
    ),
    "a string": (points(query={"x": ["NaN"]}), "query", "numbers only"),
    "x and y of different lengths": (
        points(support={"x": [0.0, 1.0], "y": [1.0]}),
        "support",
        "same length",
    ),
    "no support points": (points(support={"x": [], "y": []}), "support", "at least one"),
    "no query": (json.dumps({"support": {"x": [0.0], "y": [1.0]}}), "query", '"query" must be'),
    "too many query points": (points(query={"x": [0.0] * 501}), "query", "at most 500"),
    "too many support points": (
        points(support={"x": [0.0] * 101, "y": [0.0] * 101}),
        "support",
        "at most 100",
    ),
    "not an object": ("[1, 2]", "non_field_errors", "JSON object"),
}


@pytest.mark.parametrize("case", POINT_CASES)
def test_bad_regression_requests_are_400_and_store_nothing(case, user, user_client, artifacts_in_tmp):
    model = register("cnp", "function", owner=user)
    body, field, message = POINT_CASES[case]
    before = counts(artifacts_in_tmp)
    response = user_client.post(url(model), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])
    assert counts(artifacts_in_tmp) == before


def test_images_for_a_regression_model_are_a_400(user, user_client):
    model = register("cnp", "function", owner=user)
    response = user_client.post(url(model), task(), format="multipart")
    assert response.status_code == 400
    assert "JSON" in response.json()["non_field_errors"][0]


def test_a_model_whose_weights_cannot_predict_is_a_400(user, user_client):
    # given a model row whose file is a plain safetensors file (no MetaKB header): registering
    # refuses such a file now, so the row is written with the ORM, as one stored before that was
    from safetensors.numpy import save

    from learning.artifacts import artifact_save

    stored = artifact_save("models/raw.safetensors", save({"w": np.zeros(2, np.float32)}))
    model = MetaModel.objects.create(
        name="raw",
        algorithm="maml",
        architecture="mlp",
        weights_file=stored.name,
        weights_sha256=stored.sha256,
        weights_size=stored.size,
        owner=user,
    )
    response = user_client.post(url(model), points(), content_type="application/json")
    assert response.status_code == 400
    assert "cannot make predictions" in response.json()["non_field_errors"][0]
