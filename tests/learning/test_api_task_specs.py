"""The task spec API: scoped lists and details, filters, and creation through ``task_spec_create``."""

from __future__ import annotations

import pytest

from learning.models import SourceDomain, TaskSpec, Visibility
from learning.services.task_specs import default_split, task_spec_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/task-specs/"


def _domain(slug: str, *, owner=None, visibility: str = Visibility.PUBLIC, groups: int = 0) -> SourceDomain:
    """An image domain of twenty classes of 20 examples (in ``groups`` groups of equal size, if any)."""
    group_of = (lambda i: f"g{i % groups}") if groups else (lambda i: "")
    classes = [{"name": f"{slug}-c{i}", "group": group_of(i), "count": 20} for i in range(20)]
    class_groups = [{"name": f"g{g}", "class_count": 20 // groups} for g in range(groups)]
    return SourceDomain.objects.create(
        name=slug.title(),
        slug=slug,
        modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        origin=SourceDomain.Origin.UPLOAD,
        classes=classes,
        class_groups=class_groups,
        class_count=20,
        example_count=400,
        owner=owner,
        visibility=visibility,
    )


def _ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def test_anonymous_list_shows_public_specs_only(api_client, user):
    # given a public spec, and a private spec of ada's on a public domain
    domain = _domain("birds")
    public = task_spec_create(domain=domain, n_way=2)
    private = task_spec_create(domain=domain, n_way=3, owner=user, visibility=Visibility.PRIVATE)

    # when anonymous and ada list the specs
    anonymous = api_client.get(URL)

    # then only the public spec is listed to the anonymous user
    assert anonymous.status_code == 200
    assert _ids(anonymous) == [public.pk]
    assert private.pk not in _ids(anonymous)


def test_owner_sees_private_spec_and_stranger_gets_404(user_client, stranger_client, user):
    # given a private spec of ada's on her private domain
    domain = _domain("secret", owner=user, visibility=Visibility.PRIVATE)
    spec = task_spec_create(domain=domain, n_way=2, owner=user, visibility=Visibility.PRIVATE)

    # when ada and eve ask for it
    mine = user_client.get(f"{URL}{spec.pk}/")
    theirs = stranger_client.get(f"{URL}{spec.pk}/")

    # then ada reads it with its domain's slug and split, and eve is told it does not exist
    assert mine.status_code == 200
    assert mine.json()["domain"] == "secret"
    assert mine.json()["split"] == spec.split
    assert mine.json()["owner"] == "ada"
    assert theirs.status_code == 404
    assert spec.pk not in _ids(stranger_client.get(URL))


def test_filters_by_domain_shape_and_group(api_client):
    # given specs over two domains with different shapes
    birds, letters = _domain("birds"), _domain("letters", groups=2)
    b2 = task_spec_create(domain=birds, n_way=2, k_shot=1, query_size=5)
    b3 = task_spec_create(domain=birds, n_way=3, k_shot=5, query_size=5)
    split = {"by": "group", "meta_train": ["g0"], "meta_val": [], "meta_test": ["g1"]}
    grouped = task_spec_create(domain=letters, split=split, n_way=2, within_group=True, query_size=5)

    # when the list is filtered
    by_domain = _ids(api_client.get(URL, {"domain": "birds"}))
    by_way = _ids(api_client.get(URL, {"n_way": 3}))
    by_shot = _ids(api_client.get(URL, {"k_shot": 1, "domain": "birds"}))
    by_group = _ids(api_client.get(URL, {"within_group": "true"}))

    # then each filter keeps exactly the matching specs
    assert sorted(by_domain) == sorted([b2.pk, b3.pk])
    assert by_way == [b3.pk]
    assert by_shot == [b2.pk]
    assert by_group == [grouped.pk]


def test_filter_on_a_private_domain_of_someone_else_is_rejected(stranger_client, user):
    # given ada's private domain
    _domain("secret", owner=user, visibility=Visibility.PRIVATE)

    # when eve filters by its slug
    response = stranger_client.get(URL, {"domain": "secret"})

    # then the filter is rejected as naming an unknown domain
    assert response.status_code == 400
    assert "domain" in response.json()


def test_ordering_search_and_pagination(api_client):
    # given three specs with different names and shapes
    domain = _domain("birds")
    specs = [task_spec_create(domain=domain, name=f"spec {n}", n_way=n, query_size=5) for n in (4, 2, 3)]

    # when ordered by n_way, searched by name and paged two at a time
    ordered = api_client.get(URL, {"ordering": "n_way"})
    searched = api_client.get(URL, {"search": "spec 3"})
    first = api_client.get(URL, {"ordering": "-n_way", "page_size": 2})
    second = api_client.get(first.json()["next"])

    # then the order, the match and the pages are right
    assert [row["n_way"] for row in ordered.json()["results"]] == [2, 3, 4]
    assert _ids(searched) == [specs[2].pk]
    assert first.json()["count"] == 3
    assert [row["n_way"] for row in first.json()["results"]] == [4, 3]
    assert [row["n_way"] for row in second.json()["results"]] == [2]
    assert second.json()["next"] is None


def test_create_without_split_uses_the_default_split(user_client, user):
    # given a public domain
    domain = _domain("birds")

    # when ada creates a spec without a split
    response = user_client.post(
        URL, {"domain": "birds", "n_way": 2, "k_shot": 1, "query_size": 5, "seed": 4}, format="json"
    )

    # then the spec is hers, over the domain, with the default split for its seed
    assert response.status_code == 201, response.json()
    spec = TaskSpec.objects.get(pk=response.json()["id"])
    assert spec.owner == user
    assert spec.domain == domain
    assert spec.split == default_split(domain=domain, seed=4)
    assert response.json()["domain"] == "birds"
    assert response.json()["identity_hash"] == spec.identity_hash


def test_create_with_an_explicit_split_and_visibility(user_client):
    # given a grouped domain
    _domain("letters", groups=2)
    split = {"by": "group", "meta_train": ["g0"], "meta_val": [], "meta_test": ["g1"]}

    # when ada creates a private within-group spec with that split
    response = user_client.post(
        URL,
        {
            "domain": "letters",
            "split": split,
            "n_way": 3,
            "within_group": True,
            "query_size": 5,
            "visibility": "private",
        },
        format="json",
    )

    # then the spec keeps the split and is private
    assert response.status_code == 201, response.json()
    assert response.json()["split"] == split
    assert response.json()["within_group"] is True
    assert response.json()["visibility"] == "private"


def test_create_on_a_private_domain_of_someone_else_is_400_and_writes_nothing(stranger_client, user):
    # given ada's private domain
    _domain("secret", owner=user, visibility=Visibility.PRIVATE)

    # when eve tries to create a spec on it
    response = stranger_client.post(URL, {"domain": "secret", "n_way": 2}, format="json")

    # then the domain field is rejected as unknown, and no spec is written
    assert response.status_code == 400
    assert "domain" in response.json()
    assert TaskSpec.objects.count() == 0


def test_service_errors_come_back_as_400_naming_the_field(user_client):
    # given a domain of twenty classes (four in meta-test)
    _domain("birds")

    # when ada asks for more ways than the meta-test part has classes
    too_wide = user_client.post(URL, {"domain": "birds", "n_way": 9, "query_size": 5}, format="json")
    # and gives a split that is not an object
    bad_split = user_client.post(URL, {"domain": "birds", "split": [1, 2]}, format="json")
    # and a split naming an unknown class
    unknown = user_client.post(
        URL,
        {"domain": "birds", "n_way": 2, "split": {"by": "class", "meta_train": ["nope"], "meta_test": []}},
        format="json",
    )

    # then each is a 400 naming its field, and nothing was written
    assert too_wide.status_code == 400
    assert "n_way" in too_wide.json()
    assert bad_split.status_code == 400
    assert "split" in bad_split.json()
    assert unknown.status_code == 400
    assert "nope" in unknown.json()["split"][0]
    assert TaskSpec.objects.count() == 0


def test_anonymous_cannot_create(api_client):
    # given a public domain
    _domain("birds")

    # when an anonymous client posts a spec
    response = api_client.post(URL, {"domain": "birds", "n_way": 2}, format="json")

    # then it is refused and nothing is written
    assert response.status_code == 401
    assert TaskSpec.objects.count() == 0
