"""Drawing samples from a Neural Statistician: the page and the API, scoped like the model; nothing stored."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from learning.models import Evaluation, MetaModel, SourceDomain, Visibility
from tests.learning.test_predict_api import image, register

pytestmark = pytest.mark.django_db


def page(model: MetaModel) -> str:
    return f"/models/{model.pk}/samples/"


def api(model: MetaModel) -> str:
    return f"/api/v1/models/{model.pk}/samples/"


def pixels(data_uri: str) -> np.ndarray:
    head, _, payload = data_uri.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def test_a_statistician_page_links_to_samples_and_draws_them_beside_the_examples(client, user):
    # given ada's private Neural Statistician
    model = register("statistician", owner=user, visibility=Visibility.PRIVATE)
    client.force_login(user)
    before = (MetaModel.objects.count(), Evaluation.objects.count(), SourceDomain.objects.count())

    # when she opens its page, follows "Draw samples" and posts 3 images of one class for 6 samples
    detail = client.get(f"/models/{model.pk}/").content.decode()
    form = client.get(page(model))
    response = client.post(page(model), {"support": [image(s) for s in range(3)], "count": "6", "seed": "2"})

    # then the page shows her 3 examples as the model saw them and 6 drawn images
    assert 'id="draw-samples"' in detail and page(model) in detail
    assert form.status_code == 200 and 'name="support"' in form.content.decode()
    assert response.status_code == 200
    html = response.content.decode()
    examples = html.split('id="sample-support"')[1].split("</ul>")[0]
    drawn = html.split('id="samples"')[1].split("</ul>")[0]
    assert examples.count("<img") == 3 and drawn.count("<img") == 6
    assert "seed 2" in html
    # and nothing was stored
    assert (MetaModel.objects.count(), Evaluation.objects.count(), SourceDomain.objects.count()) == before


def test_other_models_offer_no_samples_and_refuse_them_by_name(client, user):
    model = register("protonet", owner=user)
    client.force_login(user)

    assert 'id="draw-samples"' not in client.get(f"/models/{model.pk}/").content.decode()
    assert "only Neural Statistician models do" in client.get(page(model)).content.decode()
    response = client.post(api(model), {"support": [image(1)]}, format="multipart")
    assert response.status_code == 400
    assert "only Neural Statistician models" in response.json()["non_field_errors"][0]


def test_a_private_statistician_is_404_to_a_stranger(client, user, stranger):
    model = register("statistician", owner=user, visibility=Visibility.PRIVATE)
    client.force_login(stranger)
    assert client.get(page(model)).status_code == 404
    assert client.post(api(model), {"support": [image(1)]}).status_code == 404


def test_the_api_answers_28x28_pngs_and_the_seed_decides_them(client, user):
    model = register("statistician", owner=user)

    def draw(seed: int) -> dict:
        response = client.post(api(model), {"support": [image(5), image(6)], "count": 3, "seed": seed})
        assert response.status_code == 200, response.content
        return response.json()

    first, again, other = draw(1), draw(1), draw(2)

    assert first["count"] == 3 and first["seed"] == 1 and first["algorithm"] == "statistician"
    images = [pixels(uri) for uri in first["samples"]]
    assert all(img.shape == (28, 28) and img.dtype == np.uint8 for img in images)
    assert first["samples"] == again["samples"] and first["samples"] != other["samples"]


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({}, "support", "choose at least one image"),
        ({"count": "0"}, "count", "count must be between 1 and 32, got 0"),
        ({"count": "many"}, "count", "count must be a whole number"),
        ({"seed": "-1"}, "seed", "seed must be between 0 and"),
        ({"support": [image(s) for s in range(21)]}, "support", "at most 20 images of the class, got 21"),
    ],
)
def test_bad_input_is_refused_naming_the_field(client, user, form, field, message):
    model = register("statistician", owner=user)
    client.force_login(user)
    body = {"support": [image(1)], **form} if form else {}

    response = client.post(api(model), body)
    page_response = client.post(page(model), body)

    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    assert page_response.status_code == 400 and message in page_response.content.decode()
