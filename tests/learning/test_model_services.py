"""Registering models and evaluations: artifacts and rows land together or not at all."""

from __future__ import annotations

import hashlib

import pytest

from learning.artifacts import artifact_read
from learning.errors import InvalidInput
from learning.models import Evaluation, MetaModel, SourceDomain
from learning.services.models import evaluation_create, metamodel_register
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain():
    return SourceDomain.objects.create(
        name="Sinusoid",
        slug="sinusoid",
        modality=SourceDomain.Modality.FUNCTION_REGRESSION,
        origin=SourceDomain.Origin.BUILTIN,
    )


def _files(root):
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_register_stores_weights_with_their_hash_and_lineage(domain, user):
    # given a parent model
    parent = metamodel_register(
        name="parent",
        algorithm="maml",
        architecture="mlp",
        weights=model_weights("maml", arch="mlp", seed=0),
        trained_on=[domain],
        owner=user,
    )

    # when a child is registered from it
    weights = model_weights("fomaml", arch="mlp", seed=1)
    child = metamodel_register(
        name="child",
        algorithm="fomaml",
        architecture="mlp",
        weights=weights,
        parent=parent,
        owner=user,
        visibility="private",
    )

    # then the weights round-trip with their sha256 and size, and the lineage is recorded
    assert artifact_read(child.weights_file) == weights
    assert child.weights_sha256 == hashlib.sha256(weights).hexdigest()
    assert child.weights_size == len(weights)
    assert artifact_read(parent.weights_file) == model_weights("maml", arch="mlp", seed=0)
    assert child.parent == parent and list(parent.trained_on.all()) == [domain]


def test_a_failed_register_leaves_no_row_and_no_file(domain, artifacts_in_tmp):
    # given a trained-on domain that was never saved (the lineage write will fail)
    unsaved = SourceDomain(name="ghost")

    # when registering fails at the database / then neither the row nor the weights file remain
    with pytest.raises(ValueError, match="Cannot add"):
        metamodel_register(
            name="x",
            algorithm="maml",
            architecture="mlp",
            weights=model_weights("maml", arch="mlp"),
            trained_on=[unsaved],
        )
    assert MetaModel.objects.count() == 0
    assert _files(artifacts_in_tmp) == []


def test_register_refuses_empty_weights_and_names(domain, artifacts_in_tmp):
    with pytest.raises(InvalidInput, match="weights are empty"):
        metamodel_register(name="x", algorithm="maml", architecture="mlp", weights=b"")
    with pytest.raises(InvalidInput, match="needs a name"):
        metamodel_register(
            name=" ", algorithm="maml", architecture="mlp", weights=model_weights("maml", arch="mlp")
        )
    assert MetaModel.objects.count() == 0 and _files(artifacts_in_tmp) == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ci95": -0.1}, "cannot be negative"),
        ({"mean": float("nan")}, "mean must be a finite number"),
        ({"episodes": 0}, "episodes must be at least 1"),
        ({"metric": "f1"}, "unknown metric 'f1'"),
        ({"shots": 0}, "shots must be at least 1"),
        ({"episodes": 2**31}, "episodes must be at most 2147483647"),  # more than the column holds
        ({"shots": 2**70}, "shots must be at most 2147483647"),
    ],
)
def test_evaluation_refuses_impossible_numbers(domain, kwargs, words):
    # given a model
    model = metamodel_register(
        name="m", algorithm="maml", architecture="mlp", weights=model_weights("maml", arch="mlp")
    )
    values = {"shots": 5, "metric": "mse", "mean": 0.5, "ci95": 0.01, "episodes": 600, **kwargs}

    # when an impossible result is recorded / then it is refused and nothing is written
    with pytest.raises(InvalidInput, match=words):
        evaluation_create(model=model, target_domain=domain, **values)
    assert Evaluation.objects.count() == 0
