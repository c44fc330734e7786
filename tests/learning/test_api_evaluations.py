"""The evaluation API: results scoped by their model and target domain, filters, and recording results."""

from __future__ import annotations

import pytest

from learning.models import Evaluation, MetaModel, SourceDomain, Visibility
from learning.services.models import evaluation_create, metamodel_register
from tests.weights import model_weights

pytestmark = pytest.mark.django_db

URL = "/api/v1/evaluations/"


def _domain(slug: str, *, owner=None, visibility: str = Visibility.PUBLIC) -> SourceDomain:
    return SourceDomain.objects.create(
        name=slug.title(),
        slug=slug,
        modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        origin=SourceDomain.Origin.UPLOAD,
        owner=owner,
        visibility=visibility,
    )


def _model(name: str, *, owner=None, visibility: str = Visibility.PUBLIC) -> MetaModel:
    return metamodel_register(
        name=name,
        algorithm="protonet",
        architecture="conv4",
        weights=model_weights("protonet"),
        owner=owner,
        visibility=visibility,
    )


def _evaluation(model, domain, *, shots: int = 1, metric: str = "accuracy", mean: float = 0.5) -> Evaluation:
    return evaluation_create(
        model=model, target_domain=domain, shots=shots, metric=metric, mean=mean, ci95=0.01, episodes=600
    )


def _ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def _payload(model: MetaModel, **overrides) -> dict:
    return {
        "model": model.pk,
        "target_domain": "birds",
        "shots": 5,
        "metric": "accuracy",
        "mean": 0.71,
        "ci95": 0.012,
        "episodes": 600,
        **overrides,
    }


def test_list_hides_results_of_private_models_and_domains(api_client, user_client, user):
    # given results of a public model on a public domain, of a private model, and on a private domain
    birds, secret = _domain("birds"), _domain("secret", owner=user, visibility=Visibility.PRIVATE)
    public, private = (
        _model("public", owner=user),
        _model("private", owner=user, visibility=Visibility.PRIVATE),
    )
    shown = _evaluation(public, birds)
    of_private_model = _evaluation(private, birds)
    on_private_domain = _evaluation(public, secret)

    # when anonymous and ada list results
    anonymous = _ids(api_client.get(URL))
    owner = _ids(user_client.get(URL))

    # then anonymous sees only the public pair, and ada sees all three
    assert anonymous == [shown.pk]
    assert sorted(owner) == sorted([shown.pk, of_private_model.pk, on_private_domain.pk])


def test_detail_fields_and_404_for_strangers(api_client, stranger_client, user):
    # given a public result and one of ada's private model
    birds = _domain("birds")
    public = _evaluation(_model("public", owner=user), birds, shots=5, mean=0.8)
    hidden = _evaluation(_model("private", owner=user, visibility=Visibility.PRIVATE), birds)

    # when they are read by id
    row = api_client.get(f"{URL}{public.pk}/").json()
    response = stranger_client.get(f"{URL}{hidden.pk}/")

    # then the public one has its numbers and references, and the other does not exist to eve
    assert row["model"] == public.model_id
    assert row["target_domain"] == "birds"
    numbers = {key: row[key] for key in ("shots", "metric", "mean", "ci95", "episodes")}
    assert numbers == {"shots": 5, "metric": "accuracy", "mean": 0.8, "ci95": 0.01, "episodes": 600}
    assert row["baseline_mean"] is None
    assert response.status_code == 404


def test_filters_ordering_and_pagination(api_client):
    # given results of two models on two domains at different shots and metrics
    birds, fungi = _domain("birds"), _domain("fungi")
    first, second = _model("first"), _model("second")
    a = _evaluation(first, birds, shots=1, mean=0.4)
    b = _evaluation(first, fungi, shots=5, mean=0.9)
    c = _evaluation(second, birds, shots=5, metric="log_likelihood", mean=-1.0)

    # when the list is filtered, ordered and paged
    def ids(**params):
        return sorted(_ids(api_client.get(URL, params)))

    by_mean = api_client.get(URL, {"ordering": "-mean"}).json()["results"]
    page = api_client.get(URL, {"ordering": "mean", "page_size": 2, "page": 2}).json()

    # then each filter keeps the matching results, and order and pages follow the mean
    assert ids(model=first.pk) == sorted([a.pk, b.pk])
    assert ids(target_domain="birds") == sorted([a.pk, c.pk])
    assert ids(metric="log_likelihood") == [c.pk]
    assert ids(shots=5) == sorted([b.pk, c.pk])
    assert ids(shots=5, target_domain="fungi") == [b.pk]
    assert [row["id"] for row in by_mean] == [b.pk, a.pk, c.pk]
    assert page["count"] == 3
    assert [row["id"] for row in page["results"]] == [b.pk]


def test_owner_records_a_result_with_a_baseline(user_client, user):
    # given ada's model and a public domain
    _domain("birds")
    model = _model("mine", owner=user)

    # when she records a result
    response = user_client.post(URL, _payload(model, baseline_mean=0.6, baseline_ci95=0.02), format="json")

    # then it is stored with its numbers
    assert response.status_code == 201, response.json()
    evaluation = Evaluation.objects.get(pk=response.json()["id"])
    assert evaluation.model == model
    assert evaluation.target_domain.slug == "birds"
    assert (evaluation.shots, evaluation.mean, evaluation.baseline_mean) == (5, 0.71, 0.6)
    assert response.json()["baseline_ci95"] == 0.02


def test_results_only_for_models_you_own(stranger_client, user):
    # given ada's public and private models
    _domain("birds")
    public, private = (
        _model("public", owner=user),
        _model("private", owner=user, visibility=Visibility.PRIVATE),
    )

    # when eve records results for them
    on_public = stranger_client.post(URL, _payload(public), format="json")
    on_private = stranger_client.post(URL, _payload(private), format="json")

    # then both are 400 on the model field, and nothing is written
    assert on_public.status_code == 400
    assert "own" in on_public.json()["model"][0]
    assert on_private.status_code == 400
    assert "model" in on_private.json()
    assert Evaluation.objects.count() == 0


def test_cannot_target_a_private_domain_of_someone_else(stranger_client, stranger, user):
    # given eve's model and ada's private domain
    _domain("secret", owner=user, visibility=Visibility.PRIVATE)
    model = _model("eve's", owner=stranger)

    # when eve records a result on ada's domain
    response = stranger_client.post(URL, _payload(model, target_domain="secret"), format="json")

    # then the target domain is rejected as unknown, and nothing is written
    assert response.status_code == 400
    assert "target_domain" in response.json()
    assert Evaluation.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ci95": -0.1}, "ci95"),
        ({"episodes": 0}, "episodes"),
        ({"metric": "f1"}, "metric"),
        ({"shots": 0}, "shots"),
        ({"mean": "high"}, "mean"),
    ],
)
def test_bad_numbers_are_400_naming_the_field(user_client, user, overrides, field):
    # given ada's model and a public domain
    _domain("birds")
    model = _model("mine", owner=user)

    # when she records a result with one bad value
    response = user_client.post(URL, _payload(model, **overrides), format="json")

    # then the field is named, and nothing is written
    assert response.status_code == 400
    assert field in response.json()
    assert Evaluation.objects.count() == 0


def test_anonymous_cannot_record(api_client, user):
    # given ada's model
    _domain("birds")
    model = _model("mine", owner=user)

    # when an anonymous client records a result for it
    response = api_client.post(URL, _payload(model), format="json")

    # then it is refused and nothing is written
    assert response.status_code == 401
    assert Evaluation.objects.count() == 0
