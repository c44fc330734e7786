"""The "Try it" page: a plain multipart form that shows predictions, scoped like the model page."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from learning.models import Evaluation, MetaModel, SourceDomain, Visibility
from tests.learning.factories import png_bytes
from tests.learning.test_predict_api import LABELS, register

pytestmark = pytest.mark.django_db


def page(model: MetaModel) -> str:
    return f"/models/{model.pk}/try/"


def image(seed: int, name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(seed), content_type="image/png")


def rows_form(ways: int = 5) -> dict:
    form = {f"label_{i}": LABELS[i] for i in range(ways)}
    form.update({f"support_{i}": [image(i, f"s{i}.png"), image(50 + i, f"t{i}.png")] for i in range(ways)})
    form["query"] = [image(900, "mystery-a.png"), image(901, "mystery-b.png")]
    return form


def test_the_model_page_links_to_try_it_and_the_page_renders_for_anyone_who_may_see_it(client, user):
    # given a public ProtoNet
    model = register("protonet", owner=user)

    # when an anonymous visitor opens the model page and follows "Try it"
    detail = client.get(f"/models/{model.pk}/")
    response = client.get(page(model))

    # then the page offers label rows and a query input, posting to itself as multipart
    assert page(model) in detail.content.decode()
    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert 'name="label_0"' in html and 'name="support_4"' in html and 'name="query"' in html
    assert "js/try-it.js" in html


def test_a_private_model_page_is_404_to_a_stranger(client, user, stranger):
    model = register("protonet", owner=user, visibility=Visibility.PRIVATE)
    client.force_login(stranger)
    assert client.get(page(model)).status_code == 404
    assert client.post(page(model), rows_form()).status_code == 404
    client.force_login(user)
    assert client.get(page(model)).status_code == 200


def test_posting_the_form_shows_each_query_with_its_label_and_thumbnail(client, user, artifacts_in_tmp):
    # given ada's private ProtoNet
    model = register("protonet", owner=user, visibility=Visibility.PRIVATE)
    client.force_login(user)
    before = (MetaModel.objects.count(), Evaluation.objects.count(), SourceDomain.objects.count())

    # when she posts 5 labels of 2 images each, and 2 queries
    response = client.post(page(model), rows_form())

    # then both queries are shown with what the model saw, a predicted label and probabilities
    assert response.status_code == 200
    html = response.content.decode()
    assert "Predictions" in html and "mystery-a.png" in html and "mystery-b.png" in html
    # each query once, and the 10 support images beside them, by label, as the model saw them
    assert html.count('src="data:image/png;base64,') == 2 + 10
    gallery = html.split('id="support-gallery"')[1].split("</ul>")[0]
    assert gallery.count("<img") == 10 and 'title="three"' in gallery
    assert html.count('class="prediction-label"') == 2
    assert any(f'<div class="prediction-label">{label}</div>' in html for label in LABELS)
    # and the labels she typed are still in the form, and nothing was stored
    assert 'value="three"' in html
    assert (MetaModel.objects.count(), Evaluation.objects.count(), SourceDomain.objects.count()) == before


def test_a_bad_post_shows_the_problem_in_the_page(client, user):
    model = register("maml", owner=user)
    form = rows_form(ways=3)
    response = client.post(page(model), form)
    assert response.status_code == 400
    html = response.content.decode()
    assert "trained 5-way" in html and "Predictions" not in html


def test_a_label_without_images_is_named(client, user):
    model = register("protonet", owner=user)
    form = rows_form(ways=2)
    form["label_2"] = "lonely"
    response = client.post(page(model), form)
    assert "choose at least one image for label &#x27;lonely&#x27; (row 3)" in response.content.decode()


def test_a_regression_model_takes_numbers_and_shows_mean_and_std(client, user):
    # given a public CNP
    model = register("cnp", "function", owner=user)

    # when the numbers are typed in the text areas
    response = client.post(
        page(model), {"support_x": "-1, 0, 1", "support_y": "0.2\n-0.1\n0.4", "query_x": "-0.5 0.5 1.5"}
    )

    # then a table shows a mean and a std for each of the three query points
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<tr><td class="num mono">') == 3
    assert html.count("± ") >= 3
    assert "-0.5000" in html and "1.5000" in html


def test_regression_text_that_is_not_a_number_is_named(client, user):
    model = register("cnp", "function", owner=user)
    response = client.post(page(model), {"support_x": "1, two", "support_y": "1, 2", "query_x": "0"})
    assert "&#x27;two&#x27; in support.x is not a number" in response.content.decode()
