"""The transfer matrix: newest gain per source and target, negative transfer flagged, scoped to the user."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.models import SourceDomain
from learning.services.models import evaluation_create, metamodel_register
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


def _domain(slug: str, **kw) -> SourceDomain:
    return SourceDomain.objects.create(
        name=slug.title(),
        slug=slug,
        modality="image_classification",
        origin="upload",
        content_sha256=slug.ljust(64, "0"),
        **kw,
    )


def _measured(model, target, *, mean, baseline, gain_ci, shots=5):
    return evaluation_create(
        model=model,
        target_domain=target,
        shots=shots,
        metric="accuracy",
        mean=mean,
        ci95=0.01,
        episodes=600,
        baseline_mean=baseline,
        baseline_ci95=0.01,
        gain_ci95=gain_ci,
    )


@pytest.fixture
def catalog(user):
    helps = metamodel_register(
        name="helps", algorithm="protonet", architecture="conv4", weights=model_weights()
    )
    hurts = metamodel_register(
        name="hurts", algorithm="protonet", architecture="conv4", weights=model_weights()
    )
    hidden = metamodel_register(
        name="hidden",
        algorithm="protonet",
        architecture="conv4",
        weights=model_weights(),
        owner=user,
        visibility="private",
    )
    katakana, sanskrit = _domain("katakana"), _domain("sanskrit")
    _measured(helps, katakana, mean=0.70, baseline=0.60, gain_ci=0.02)  # superseded below
    _measured(helps, katakana, mean=0.80, baseline=0.60, gain_ci=0.02)
    _measured(hurts, sanskrit, mean=0.40, baseline=0.60, gain_ci=0.03)
    _measured(hidden, sanskrit, mean=0.90, baseline=0.60, gain_ci=0.03)
    _measured(helps, sanskrit, mean=0.61, baseline=0.60, gain_ci=0.05, shots=1)
    return helps, hurts, hidden, katakana, sanskrit


def test_the_api_serves_the_newest_gain_per_cell_and_flags_negative_transfer(api_client, catalog):
    helps, hurts, *_ = catalog

    body = api_client.get("/api/v1/transfer-matrix/").json()

    assert body["shots"] == 5 and body["available_shots"] == [1, 5]
    cells = {(c["source"], c["target"]): c for c in body["cells"]}
    assert set(cells) == {(helps.pk, "katakana"), (hurts.pk, "sanskrit")}  # the private model is not shown
    assert cells[(helps.pk, "katakana")]["gain"] == pytest.approx(0.20)
    assert not cells[(helps.pk, "katakana")]["negative_transfer"]
    assert cells[(hurts.pk, "sanskrit")]["gain"] == pytest.approx(-0.20)
    assert cells[(hurts.pk, "sanskrit")]["negative_transfer"]


def test_an_uncertain_loss_is_not_called_negative_transfer(api_client, catalog):
    body = api_client.get("/api/v1/transfer-matrix/?shots=1").json()
    (cell,) = body["cells"]
    assert cell["gain"] == pytest.approx(0.01) and not cell["negative_transfer"]


def test_the_owner_sees_their_private_source(user_client, catalog):
    _, _, hidden, *_ = catalog
    body = user_client.get("/api/v1/transfer-matrix/").json()
    assert hidden.pk in {s["id"] for s in body["sources"]}


def test_bad_parameters_are_refused_by_name(api_client):
    assert "shots" in api_client.get("/api/v1/transfer-matrix/?shots=five").json()
    assert "metric" in api_client.get("/api/v1/transfer-matrix/?metric=f1").json()


def test_the_heatmap_page_renders_gains_and_the_negative_flag(client, catalog):
    page = client.get(reverse("transfer-matrix"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "+20.0 ± 2.0 pts" in html and "-20.0 ± 3.0 pts" in html and "negative transfer" in html
    assert "secret-source" not in html


def test_the_model_page_flags_negative_transfer(client, catalog):
    _, hurts, *_ = catalog
    html = client.get(reverse("model-detail", args=[hurts.pk])).content.decode()
    assert "negative transfer" in html


def test_a_gain_is_credited_to_the_source_model_unless_the_source_is_hidden(api_client, user_client, user):
    # given a public model transferred from ada's private source onto a target
    source = metamodel_register(
        name="private source",
        algorithm="protonet",
        architecture="conv4",
        weights=model_weights(),
        owner=user,
        visibility="private",
    )
    child = metamodel_register(
        name="child",
        algorithm="finetune",
        architecture="conv4_transfer",
        weights=model_weights("finetune"),
        parent=source,
    )
    _measured(child, _domain("target"), mean=0.7, baseline=0.6, gain_ci=0.02)

    # then ada sees the gain credited to her source, and a visitor sees it on the child
    (mine,) = user_client.get("/api/v1/transfer-matrix/").json()["cells"]
    (theirs,) = api_client.get("/api/v1/transfer-matrix/").json()["cells"]
    assert (mine["source"], mine["model"]) == (source.pk, child.pk)
    assert (theirs["source"], theirs["model"]) == (child.pk, child.pk)
