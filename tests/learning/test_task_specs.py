"""Task specs: validated splits, clear errors, and an identity hash that pins the episodes."""

from __future__ import annotations

import pytest

from learning.errors import InvalidInput
from learning.models import SourceDomain, TaskSpec
from learning.services.task_specs import default_split, split_classes, task_spec_create

pytestmark = pytest.mark.django_db


def _grouped_domain(groups: dict[str, int], per_class: int = 20) -> SourceDomain:
    classes = [
        {"name": f"{group}/c{i:02d}", "group": group, "count": per_class}
        for group, n in groups.items()
        for i in range(n)
    ]
    return SourceDomain.objects.create(
        name="Alphabets",
        slug="alphabets",
        modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        origin=SourceDomain.Origin.UPLOAD,
        content_sha256="a" * 64,
        classes=classes,
        class_groups=[{"name": g, "class_count": n} for g, n in sorted(groups.items())],
        class_count=len(classes),
        example_count=len(classes) * per_class,
    )


def test_default_split_keeps_groups_whole_and_disjoint():
    # given a domain of five alphabets
    domain = _grouped_domain({"A": 10, "B": 12, "C": 8, "D": 20, "E": 6})

    # when the default split is drawn
    split = default_split(domain=domain, seed=3)

    # then every group lands in exactly one part, and meta-train and meta-test are not empty
    assert sorted([*split["meta_train"], *split["meta_val"], *split["meta_test"]]) == [
        "A",
        "B",
        "C",
        "D",
        "E",
    ]
    assert split["meta_train"] and split["meta_test"]
    train = {domain.classes[i]["group"] for i in split_classes(domain=domain, split=split, part="meta_train")}
    assert train == set(split["meta_train"])


def test_identity_hash_is_equal_for_equal_specs_and_differs_with_the_seed():
    # given one domain and a fixed split
    domain = _grouped_domain({"A": 10, "B": 10, "C": 10})
    split = {"by": "group", "meta_train": ["A", "B"], "meta_val": [], "meta_test": ["C"]}

    # when two identical specs and one with another seed are created
    first = task_spec_create(domain=domain, split=split, n_way=5, k_shot=1, query_size=5, seed=0)
    second = task_spec_create(domain=domain, split=split, n_way=5, k_shot=1, query_size=5, seed=0)
    other = task_spec_create(domain=domain, split=split, n_way=5, k_shot=1, query_size=5, seed=1)

    # then the equal ones share their identity and the other does not
    assert first.identity_hash == second.identity_hash
    assert other.identity_hash != first.identity_hash


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"n_way": 11}, "n_way", "n_way is 11 but meta_test has only 10 classes"),
        ({"k_shot": 15, "query_size": 10}, "k_shot", "k_shot + query_size = 25 exceeds the 20 examples"),
        ({"k_shot": 0}, "k_shot", "k_shot must be at least 1"),
        ({"query_size": 2**70}, "query_size", "query_size must be at most 2147483647"),  # past the column
        ({"seed": 2**31}, "seed", "seed must be from 0 to 2147483647"),
        ({"n_way": 12, "within_group": True}, "n_way", "need a group with 12 classes in meta_train"),
        (
            {"split": {"by": "group", "meta_train": ["A"], "meta_test": []}},
            "split",
            "split.meta_test is empty",
        ),
        (
            {"split": {"by": "group", "meta_train": ["A", "Z"], "meta_test": ["C"]}},
            "split",
            "has no group 'Z'",
        ),
        ({"split": {"by": "group", "meta_train": ["A"], "meta_test": ["A"]}}, "split", "in both meta_train"),
        ({"split": {"by": "pixels"}}, "split", 'must be "group" or "class"'),
    ],
)
def test_impossible_specs_are_refused_with_the_numbers_and_nothing_is_written(kwargs, field, words):
    # given a domain whose meta-test part has 10 classes of 20 examples
    domain = _grouped_domain({"A": 10, "B": 11, "C": 10})
    spec = {"split": {"by": "group", "meta_train": ["A", "B"], "meta_val": [], "meta_test": ["C"]}}
    spec.update(kwargs)

    # when the spec is created / then it is refused naming the problem
    with pytest.raises(InvalidInput) as caught:
        task_spec_create(domain=domain, **spec)
    assert caught.value.field == field
    assert words in caught.value.message
    assert TaskSpec.objects.count() == 0


def test_function_domains_split_by_seed():
    # given a function-regression domain
    domain = SourceDomain.objects.create(
        name="Sinusoid",
        slug="sinusoid",
        modality=SourceDomain.Modality.FUNCTION_REGRESSION,
        origin=SourceDomain.Origin.BUILTIN,
        generator={"family": "sinusoid"},
    )

    # when a spec is created without a split
    spec = task_spec_create(domain=domain, k_shot=10, query_size=10)

    # then train and test tasks are kept apart by seed, and a class split is refused
    assert spec.split == {"by": "seed"}
    with pytest.raises(InvalidInput, match="split tasks by seed"):
        task_spec_create(domain=domain, split={"by": "class", "meta_train": [], "meta_test": []})
