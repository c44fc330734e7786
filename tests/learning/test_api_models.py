"""The model API: scoped lists and details with lineage, filters, and registering weights files
(a MetaKB weights file fitting the declared algorithm and architecture, or a 400)."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.numpy import save as safetensors_save

from learning.engine.checkpoints import pack_blob
from learning.engine.nets import build_model
from learning.engine.weights import WEIGHTS_FORMAT
from learning.models import MetaModel, SourceDomain, Visibility
from learning.services.models import metamodel_register
from learning.services.task_specs import task_spec_create
from tests.weights import MLP_CONFIG, MODEL_CONFIGS, model_weights

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/"
WEIGHTS = model_weights("maml", arch="mlp")
"""A function-domain MAML model's weights file: what ``_model`` and ``_upload`` use by default."""
PLAIN_SAFETENSORS = safetensors_save(
    {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
)
"""A valid safetensors file, but not a MetaKB weights file (no format, model_config or algorithm)."""


def _domain(slug: str, *, owner=None, visibility: str = Visibility.PUBLIC) -> SourceDomain:
    return SourceDomain.objects.create(
        name=slug.title(),
        slug=slug,
        modality=SourceDomain.Modality.FUNCTION_REGRESSION,
        origin=SourceDomain.Origin.BUILTIN,
        owner=owner,
        visibility=visibility,
    )


def _model(name: str, *, owner=None, visibility: str = Visibility.PUBLIC, **kwargs) -> MetaModel:
    kwargs.setdefault("algorithm", "maml")
    kwargs.setdefault("architecture", "mlp")
    weights = model_weights(kwargs["algorithm"], arch=kwargs["architecture"])
    return metamodel_register(name=name, weights=weights, owner=owner, visibility=visibility, **kwargs)


def _upload(content: bytes = WEIGHTS, name: str = "weights.safetensors") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def _ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def _artifact_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_anonymous_list_shows_public_models_only(api_client, user):
    # given a public and a private model of ada's
    public = _model("public", owner=user)
    private = _model("private", owner=user, visibility=Visibility.PRIVATE)

    # when an anonymous client lists the models
    response = api_client.get(URL)

    # then only the public one is there, with its weights' checksum and size
    assert response.status_code == 200
    assert _ids(response) == [public.pk]
    assert private.pk not in _ids(response)
    row = response.json()["results"][0]
    assert row["weights_sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert row["weights_size"] == len(WEIGHTS)
    assert row["owner"] == "ada"


def test_owner_sees_private_model_and_stranger_gets_404(user_client, stranger_client, user):
    # given ada's private model
    model = _model("private", owner=user, visibility=Visibility.PRIVATE)

    # when ada and eve ask for it
    mine = user_client.get(f"{URL}{model.pk}/")
    theirs = stranger_client.get(f"{URL}{model.pk}/")

    # then ada reads it, and to eve it does not exist
    assert mine.status_code == 200
    assert mine.json()["name"] == "private"
    assert theirs.status_code == 404
    assert model.pk not in _ids(stranger_client.get(URL))


def test_detail_has_lineage_and_hides_ancestors_the_reader_may_not_see(user_client, stranger_client, user):
    # given a chain: ada's private root -> public middle (partly on her private domain) -> public leaf
    sines = _domain("sines")
    root = _model("root", owner=user, visibility=Visibility.PRIVATE, trained_on=[sines])
    secret = _domain("secret", owner=user, visibility=Visibility.PRIVATE)
    middle = _model(
        "middle", owner=user, parent=root, hyperparameters={"lr": 0.01}, trained_on=[sines, secret]
    )
    leaf = _model("leaf", owner=user, parent=middle, metrics={"mse": 0.5})

    # when ada and eve read the leaf and the middle
    mine = user_client.get(f"{URL}{leaf.pk}/").json()
    theirs = stranger_client.get(f"{URL}{leaf.pk}/").json()
    middle_to_eve = stranger_client.get(f"{URL}{middle.pk}/").json()

    # then ada sees the whole chain, and eve's chain stops before the private root
    assert mine["lineage"] == [middle.pk, root.pk]
    assert mine["parent"] == middle.pk
    assert mine["metrics"] == {"mse": 0.5}
    assert theirs["lineage"] == [middle.pk]
    assert middle_to_eve["parent"] is None
    assert middle_to_eve["trained_on"] == ["sines"]
    assert sorted(user_client.get(f"{URL}{middle.pk}/").json()["trained_on"]) == ["secret", "sines"]
    assert middle_to_eve["hyperparameters"] == {"lr": 0.01}
    assert user_client.get(f"{URL}{root.pk}/").json()["trained_on"] == ["sines"]


def test_filters(api_client):
    # given models made in different ways
    sines, steps = _domain("sines"), _domain("steps")
    spec = task_spec_create(domain=sines, split={"by": "seed"})
    maml = _model("maml", algorithm="maml", architecture="mlp", trained_on=[sines], task_spec=spec)
    proto = _model("proto", algorithm="protonet", architecture="conv4", trained_on=[steps])
    child = _model("child", algorithm="maml", architecture="conv4", parent=maml, trained_on=[sines, steps])

    # when the list is filtered
    def ids(**params):
        return sorted(_ids(api_client.get(URL, params)))

    # then each filter keeps the matching models
    assert ids(algorithm="maml") == sorted([maml.pk, child.pk])
    assert ids(architecture="conv4") == sorted([proto.pk, child.pk])
    assert ids(trained_on="steps") == sorted([proto.pk, child.pk])
    assert ids(task_spec=spec.pk) == [maml.pk]
    assert ids(parent=maml.pk) == [child.pk]
    assert ids(visibility="public") == sorted([maml.pk, proto.pk, child.pk])
    assert ids(search="prot") == [proto.pk]


def test_list_queries_do_not_grow_with_the_rows(api_client, django_assert_max_num_queries):
    # given ten models, each with a parent, a task spec and two training domains
    sines, steps = _domain("sines"), _domain("steps")
    spec = task_spec_create(domain=sines, split={"by": "seed"})
    parent = _model("parent")
    for i in range(10):
        _model(f"child {i}", parent=parent, task_spec=spec, trained_on=[sines, steps])

    # when the list is read
    with django_assert_max_num_queries(4):
        response = api_client.get(URL)

    # then every row came back with its references
    assert response.json()["count"] == 11
    assert all(sorted(row["trained_on"]) == ["sines", "steps"] for row in response.json()["results"][:10])


def test_filter_by_a_private_parent_of_someone_else_is_rejected(stranger_client, user):
    # given ada's private model with a public child
    root = _model("root", owner=user, visibility=Visibility.PRIVATE)
    _model("child", owner=user, parent=root)

    # when eve filters by the private parent
    response = stranger_client.get(URL, {"parent": root.pk})

    # then the filter is rejected, not answered with the child
    assert response.status_code == 400
    assert "parent" in response.json()


def test_ordering_and_pagination(api_client):
    # given three public models
    for name in ("b", "c", "a"):
        _model(name)

    # when ordered by name and paged two at a time
    first = api_client.get(URL, {"ordering": "name", "page_size": 2}).json()
    second = api_client.get(URL, {"ordering": "name", "page_size": 2, "page": 2}).json()
    newest_first = api_client.get(URL).json()

    # then the pages hold the names in order, and the default order is newest first
    assert first["count"] == 3
    assert [row["name"] for row in first["results"]] == ["a", "b"]
    assert [row["name"] for row in second["results"]] == ["c"]
    assert [row["name"] for row in newest_first["results"]] == ["a", "c", "b"]


def test_register_uploads_a_weights_file(user_client, user, artifacts_in_tmp):
    # given a domain, a task spec and a parent model
    sines = _domain("sines")
    spec = task_spec_create(domain=sines, split={"by": "seed"})
    parent = _model("parent", owner=user)

    # when ada registers a model with a multipart upload of its weights file (not the parent's)
    weights = model_weights("maml", arch="mlp", seed=1)
    assert weights != WEIGHTS
    response = user_client.post(
        URL,
        {
            "name": "fine-tuned",
            "algorithm": "maml",
            "architecture": "mlp",
            "weights": _upload(weights),
            "hyperparameters": '{"lr": 0.001}',
            "metrics": '{"mse": 0.1}',
            "trained_on": ["sines"],
            "task_spec": spec.pk,
            "parent": parent.pk,
            "visibility": "private",
        },
        format="multipart",
    )

    # then the model is hers, with the weights stored and their checksum, and its references
    assert response.status_code == 201, response.json()
    body = response.json()
    model = MetaModel.objects.get(pk=body["id"])
    assert model.owner == user
    assert model.visibility == Visibility.PRIVATE
    assert model.hyperparameters == {"lr": 0.001}
    assert body["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert body["weights_size"] == len(weights)
    assert (artifacts_in_tmp / model.weights_file).read_bytes() == weights
    assert body["trained_on"] == ["sines"]
    assert body["task_spec"] == spec.pk
    assert body["parent"] == parent.pk
    assert body["lineage"] == [parent.pk]


@pytest.mark.parametrize(
    "content",
    [pickle.dumps({"w": [1.0, 2.0]}), b"not weights at all", WEIGHTS[:-4], safetensors_save({})],
    ids=["pickle", "junk", "truncated", "no-tensors"],
)
def test_register_rejects_weights_that_are_not_safetensors(user_client, artifacts_in_tmp, content):
    # given weights that do not parse as (non-empty) safetensors
    count = MetaModel.objects.count()

    # when ada tries to register them
    response = user_client.post(
        URL,
        {"name": "bad", "algorithm": "maml", "architecture": "mlp", "weights": _upload(content)},
        format="multipart",
    )

    # then the weights field is rejected, and neither a row nor a file is written
    assert response.status_code == 400
    assert "weights" in response.json()
    assert MetaModel.objects.count() == count
    assert _artifact_files(artifacts_in_tmp) == []


def _packed(model_config: dict, algorithm: str, tensors_of: dict | None = None) -> bytes:
    """A weights file whose header says ``model_config`` and ``algorithm``, holding the tensors
    of a freshly built net of ``tensors_of`` (default: ``model_config`` itself)."""
    tensors = build_model(tensors_of or model_config).state_dict()
    return pack_blob(tensors, {"model_config": model_config, "algorithm": algorithm}, fmt=WEIGHTS_FORMAT)


REFUSED_WEIGHTS = {
    "plain safetensors, no MetaKB metadata": (
        lambda: ("maml", "mlp", PLAIN_SAFETENSORS),
        "weights",
        "not a MetaKB weights file",
    ),
    "an MLP too big to build": (
        # the tensors are a small MLP's: the config is refused before any tensor is looked at
        lambda: ("maml", "mlp", _packed({**MLP_CONFIG, "hidden": [16000, 16000]}, "maml", MLP_CONFIG)),
        "weights",
        "model_config.hidden",
    ),
    "a billion adaptation steps": (
        lambda: (
            "maml",
            "conv4",
            model_weights("maml", adapt={"inner_lr": 0.4, "inner_steps": 1_000_000_000}),
        ),
        "weights",
        "model_config.adapt.inner_steps",
    ),
    "declared protonet, the file says maml": (
        lambda: ("protonet", "conv4", model_weights("maml")),
        "algorithm",
        "the weights file says 'maml', not 'protonet'",
    ),
    "a protonet file declared mlp": (
        lambda: ("protonet", "mlp", model_weights("protonet")),
        "architecture",
        "the weights file says 'conv4', not 'mlp'",
    ),
    "an MLP file of protonet, which has no MLP models": (
        lambda: ("protonet", "mlp", model_weights("protonet", arch="mlp")),
        "algorithm",
        "'protonet' has no models of architecture 'mlp'",
    ),
    "tensors of another shape than the config's": (
        lambda: (
            "protonet",
            "conv4",
            _packed({**MODEL_CONFIGS["protonet"], "hidden": 8}, "protonet", MODEL_CONFIGS["protonet"]),
        ),
        "weights",
        "the model_config needs F32 [8",
    ),
}


@pytest.mark.parametrize("case", REFUSED_WEIGHTS)
def test_register_refuses_weights_that_are_not_a_model_of_the_declared_kind(
    user_client, artifacts_in_tmp, case
):
    # given a weights file that is not a usable model of the declared algorithm and architecture
    make, field, message = REFUSED_WEIGHTS[case]
    algorithm, architecture, content = make()

    # when ada tries to register it
    response = user_client.post(
        URL,
        {"name": "bad", "algorithm": algorithm, "architecture": architecture, "weights": _upload(content)},
        format="multipart",
    )

    # then the field is named with the reason, and neither a row nor a file under models/ is written
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()[field]), response.json()
    assert MetaModel.objects.count() == 0
    assert _artifact_files(artifacts_in_tmp / "models") == []
    assert _artifact_files(artifacts_in_tmp) == []


def test_register_cannot_reference_private_rows_of_someone_else(stranger_client, user):
    # given ada's private domain, task spec and model
    secret = _domain("secret", owner=user, visibility=Visibility.PRIVATE)
    spec = task_spec_create(domain=secret, split={"by": "seed"}, owner=user, visibility=Visibility.PRIVATE)
    parent = _model("private", owner=user, visibility=Visibility.PRIVATE)
    count = MetaModel.objects.count()

    # when eve registers a model naming each of them
    def register(**refs):
        data = {"name": "mine", "algorithm": "maml", "architecture": "mlp", "weights": _upload(), **refs}
        return stranger_client.post(URL, data, format="multipart")

    by_domain = register(trained_on=["secret"])
    by_spec = register(task_spec=spec.pk)
    by_parent = register(parent=parent.pk)

    # then each is a 400 naming the field, and nothing is written
    assert by_domain.status_code == 400 and "trained_on" in by_domain.json()
    assert by_spec.status_code == 400 and "task_spec" in by_spec.json()
    assert by_parent.status_code == 400 and "parent" in by_parent.json()
    assert MetaModel.objects.count() == count


def test_register_with_bad_fields_is_400(user_client):
    # given no models

    # when ada leaves out the name and gives hyperparameters that are not a JSON object
    response = user_client.post(
        URL,
        {"algorithm": "maml", "architecture": "mlp", "weights": _upload(), "hyperparameters": "[1, 2"},
        format="multipart",
    )

    # then both fields are named, and nothing is written
    assert response.status_code == 400
    assert set(response.json()) >= {"name", "hyperparameters"}
    assert MetaModel.objects.count() == 0


def test_anonymous_cannot_register(api_client):
    # given an anonymous client

    # when it uploads weights
    response = api_client.post(
        URL,
        {"name": "x", "algorithm": "maml", "architecture": "mlp", "weights": _upload()},
        format="multipart",
    )

    # then it is refused and nothing is written
    assert response.status_code == 401
    assert MetaModel.objects.count() == 0
