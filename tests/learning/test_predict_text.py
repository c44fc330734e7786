"""Text models predict from texts: the API takes JSON texts, "Try it" takes a label per row with its
examples; texts are embedded by the real sentence encoder, and nothing is stored."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from learning.engine.algorithms import train
from learning.engine.data import TextArrays
from learning.engine.text_encoder import EMBEDDING_DIM
from learning.engine.weights import weights_to_bytes
from learning.models import MetaModel
from learning.services.models import metamodel_register

pytestmark = pytest.mark.django_db

SUPPORT = [
    {"text": "what's the weather like tomorrow", "label": "weather"},
    {"text": "will it rain this afternoon", "label": "weather"},
    {"text": "play some jazz music", "label": "music"},
    {"text": "put on my workout playlist", "label": "music"},
]


@functools.cache
def _trained(algorithm: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 1, EMBEDDING_DIM)) + 0.5 * rng.normal(size=(8, 6, EMBEDDING_DIM))
    x = x.reshape(-1, EMBEDDING_DIM) / np.linalg.norm(x.reshape(-1, EMBEDDING_DIM), axis=1)[:, None]
    arrays = TextArrays(
        x.astype(np.float32), np.repeat(np.arange(8), 6), tuple(f"c{i}" for i in range(8)), ("",) * 8
    )
    config = {
        "algorithm": algorithm,
        "domain": "text",
        "model": {"hidden": [16]},
        "task": {"n_way": 2, "k_shot": 1, "query": 2},
        "steps": 3,
        "meta_batch": 1,
        "device": "cpu",
        "checkpoint_every": 0,
    }
    return train(config, arrays)


def text_model(algorithm: str = "protonet") -> MetaModel:
    result = _trained(algorithm)
    return metamodel_register(
        name=f"text {algorithm}",
        algorithm=result.algorithm,
        architecture=result.model_config["arch"],
        weights=weights_to_bytes(result.weights, result.model_config, result.algorithm),
    )


def predict(client, model: MetaModel, body, format: str = "multipart"):
    url = f"/api/v1/models/{model.pk}/predict/"
    if format == "json":
        return client.post(url, json.dumps(body), content_type="application/json")
    return client.post(url, body)


def test_the_api_labels_query_texts_and_a_query_s_answer_does_not_depend_on_the_others(client):
    model = text_model()

    both = predict(
        client, model, {"support": SUPPORT, "query": ["is it going to snow", "play a song"]}, format="json"
    )
    alone = predict(client, model, {"support": SUPPORT, "query": ["play a song"]}, format="json")

    assert both.status_code == 200, both.json()
    body = both.json()
    assert body["labels"] == ["weather", "music"] and body["task"] == "classification"
    assert [p["query"] for p in body["predictions"]] == ["is it going to snow", "play a song"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-9 for p in body["predictions"])
    single = alone.json()["predictions"][0]["probabilities"]
    assert single == pytest.approx(body["predictions"][1]["probabilities"], abs=1e-6)


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        ({"support": SUPPORT, "query": ["hi"]}, {}, "this model classifies texts: send JSON"),
        ({"support": SUPPORT, "query": [""]}, {"format": "json"}, "query[0] must be a non-empty text"),
        ({"support": SUPPORT[:1], "query": ["hi"]}, {"format": "json"}, "at least 2 distinct labels"),
        ({"support": "hello", "query": ["hi"]}, {"format": "json"}, '"support" must be a list'),
        ({"support": SUPPORT, "query": ["x" * 5001]}, {"format": "json"}, "longer than 5000 characters"),
    ],
)
def test_bad_text_requests_are_refused_naming_the_problem(client, body, kwargs, message):
    model = text_model()

    response = predict(client, model, body, **kwargs)

    assert response.status_code == 400
    assert message in str(response.json())


def test_a_maml_text_model_needs_exactly_its_trained_number_of_labels(client):
    model = text_model("maml")
    three = [*SUPPORT, {"text": "set an alarm for 7", "label": "alarm"}]

    response = predict(client, model, {"support": three, "query": ["hi"]}, format="json")

    assert response.status_code == 400 and "trained 2-way" in str(response.json())
    assert predict(client, model, {"support": SUPPORT, "query": ["hi"]}, format="json").status_code == 200


def test_try_it_takes_a_label_per_row_with_its_examples_and_shows_each_query(client):
    model = text_model()
    form = {
        "label_0": "weather",
        "examples_0": "what's the weather like tomorrow\nwill it rain this afternoon",
        "label_1": "music",
        "examples_1": "play some jazz music\n\nput on my workout playlist\n",
        "query_texts": "is it going to snow\nplay a song\n",
    }

    page = client.get(f"/models/{model.pk}/try/").content.decode()
    response = client.post(f"/models/{model.pk}/try/", form)
    missing = client.post(f"/models/{model.pk}/try/", {**form, "examples_1": "  "})

    assert 'name="examples_0"' in page and 'name="query_texts"' in page and 'type="file"' not in page
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="prediction-label"') == 2 and "is it going to snow" in html
    assert missing.status_code == 400
    assert "write at least one example of label &#x27;music&#x27; (row 2)" in missing.content.decode()
