"""Pages that stay up and say no: a broken model is skipped with a note, private things stay unnamed,
and a form that refuses its input answers 400 with nothing written."""

from __future__ import annotations

import html
import logging
import uuid

import pytest
from django.urls import reverse

from learning.artifacts import artifact_save
from learning.engine.nets import build_model
from learning.engine.weights import weights_to_bytes
from learning.models import Evaluation, MetaModel, SourceDomain, TaskSpec, Visibility
from learning.services.task_specs import task_spec_create
from tasks_app.models import Job
from tests.learning.factories import image_domain

pytestmark = pytest.mark.django_db

CONV4 = {"arch": "conv4", "hidden": 8}
MLP = {"arch": "mlp", "in_features": 1, "hidden": [8], "out_features": 1}


def _weights(config: dict, algorithm: str = "protonet") -> bytes:
    """Safetensors bytes of a freshly built net of ``config``, declaring ``algorithm``."""
    return weights_to_bytes(build_model(config).state_dict(), config, algorithm)


def _model_row(name: str, blob: bytes | None, *, sha256: str | None = None, **fields) -> MetaModel:
    """A public protonet row written with the ORM (no upload checks), its ``blob`` in artifact storage.

    ``blob=None`` points the row at a file that does not exist.
    """
    file_name, digest, size = f"models/missing-{uuid.uuid4().hex}.safetensors", "", 0
    if blob is not None:
        stored = artifact_save(f"models/{uuid.uuid4().hex}.safetensors", blob)
        file_name, digest, size = stored.name, stored.sha256, stored.size
    values = {"algorithm": "protonet", "architecture": "conv4", **fields}
    return MetaModel.objects.create(
        name=name, weights_file=file_name, weights_sha256=sha256 or digest, weights_size=size, **values
    )


# --- 1. A model that fails at use is skipped, with a note, never a 500 ----------------------------

BROKEN = {
    "mlp weights declared protonet": (lambda: _model_row("Broken", _weights(MLP)), "failed when used"),
    "garbage bytes": (lambda: _model_row("Broken", b"\x00not safetensors" * 64), "cannot make predictions"),
    "missing file": (lambda: _model_row("Broken", None), "weights file cannot be read"),
    "sha256 mismatch": (
        lambda: _model_row("Broken", _weights(CONV4), sha256="0" * 64),
        "does not match its recorded sha256",
    ),
    "weights of another algorithm": (
        lambda: _model_row("Broken", _weights(CONV4, "maml")),
        "are of algorithm 'maml', not 'protonet'",
    ),
    "weights that do not fit their config": (
        lambda: _model_row(
            "Broken", weights_to_bytes(build_model(CONV4).state_dict(), {**CONV4, "hidden": 16}, "protonet")
        ),
        "do not fit",
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_model_that_fails_at_use_is_skipped_with_a_note_by_the_recommend_page(client, caplog, kind):
    # given a usable model, a broken one, and an image target
    make, reason = BROKEN[kind]
    good = _model_row("Good conv4", _weights(CONV4))
    broken = make()
    target = image_domain(name="Target", classes={f"c{i}": 6 for i in range(4)})

    # when anyone asks which source to transfer from
    with caplog.at_level(logging.WARNING, logger="learning.predictors"):
        page = client.get(reverse("transfer-recommend"), {"domain": target.slug})

    # then the page answers, ranks the good model, and names the skipped one with its reason
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert 'id="ranking"' in text and good.name in text
    assert 'id="skipped-models"' in text
    assert "1 model was skipped:" in text
    assert f">{broken.name}</a>: " in text and reason in text
    # and the skip is logged as a warning that names the model
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "Broken" in warnings[0].getMessage() and reason in warnings[0].getMessage()


def test_when_every_model_is_broken_the_page_lists_them_all_and_ranks_none(client):
    # given only broken models
    for make, _ in BROKEN.values():
        make()
    target = image_domain(name="Target", classes={f"c{i}": 6 for i in range(4)})

    # when the ranking is asked for
    page = client.get(reverse("transfer-recommend"), {"domain": target.slug})

    # then a 200 that says all of them were skipped, without a ranking or a "no models yet" claim
    assert page.status_code == 200
    text = page.content.decode()
    assert f"{len(BROKEN)} models were skipped:" in text
    assert 'id="ranking"' not in text and "No image models" not in text
    # and no detail of the server (a storage path) reaches the page
    assert "/artifacts/" not in text and "Errno" not in text


# --- 2. Nothing derived from a private object is shown to someone who cannot see it -------------


@pytest.fixture
def secret_spec(user):
    """Ada's public task spec over her private domain, with a public model and evaluation using it."""
    private = image_domain(
        owner=user,
        visibility=Visibility.PRIVATE,
        name="Ada hidden glyphs",
        classes={f"c{i}": 4 for i in range(6)},
    )
    spec = task_spec_create(
        domain=private,
        name="Secret spec zq7",
        n_way=2,
        query_size=1,
        owner=user,
        visibility=Visibility.PUBLIC,
    )
    target = image_domain(owner=user, name="Public target", classes={f"c{i}": 4 for i in range(6)})
    model = MetaModel.objects.create(
        name="Public model", algorithm="protonet", architecture="conv4", task_spec=spec, owner=user
    )
    _evaluation(model, target, spec)
    return spec


def _evaluation(model: MetaModel, target, spec: TaskSpec) -> Evaluation:
    """A 1-shot accuracy evaluation of ``model`` on ``target`` made on ``spec``."""
    return Evaluation.objects.create(
        model=model,
        target_domain=target,
        task_spec=spec,
        shots=1,
        metric="accuracy",
        mean=0.5,
        ci95=0.1,
        episodes=600,
    )


def _leaks(text: str, spec: TaskSpec) -> bool:
    return "Secret spec" in text or f"/task-specs/{spec.pk}/" in text


@pytest.mark.parametrize("viewer", ["anonymous", "stranger"])
def test_a_public_task_spec_on_a_private_domain_is_neither_listed_nor_numbered(
    secret_spec, api_client, stranger_client, client, stranger, viewer
):
    # given someone who may not see the spec's domain
    api = api_client if viewer == "anonymous" else stranger_client
    if viewer == "stranger":
        client.force_login(stranger)
    model = MetaModel.objects.get(name="Public model")

    # when they read the lists and details that could name the spec
    specs = api.get("/api/v1/task-specs/").json()["results"]
    models = api.get("/api/v1/models/").json()["results"]
    detail = api.get(f"/api/v1/models/{model.pk}/").json()
    evaluations = api.get("/api/v1/evaluations/").json()["results"]

    # then the spec is not listed, and the model and the evaluation that use it show no id
    assert secret_spec.pk not in [s["id"] for s in specs]
    assert [m["task_spec"] for m in models] == [None] and detail["task_spec"] is None
    assert [e["task_spec"] for e in evaluations] == [None]
    # and asking for it or filtering by it reads as "does not exist"
    assert api.get(f"/api/v1/task-specs/{secret_spec.pk}/").status_code == 404
    assert api.get("/api/v1/models/", {"task_spec": secret_spec.pk}).status_code == 400
    # and no page names or links it
    for path in ("/task-specs/", f"/models/{model.pk}/", "/"):
        page = client.get(path)
        assert page.status_code == 200 and not _leaks(page.content.decode(), secret_spec), path
    assert client.get(f"/task-specs/{secret_spec.pk}/").status_code == 404


def test_a_private_task_spec_of_a_public_evaluation_is_not_named_on_the_model_page(user, client):
    # given ada's public model and evaluation, made on her private task spec over a public domain
    domain = image_domain(owner=user, classes={f"c{i}": 4 for i in range(6)})
    spec = task_spec_create(
        domain=domain, name="Secret spec k2p", n_way=2, query_size=1, owner=user, visibility="private"
    )
    model = MetaModel.objects.create(
        name="Public model", algorithm="protonet", architecture="conv4", owner=user
    )
    _evaluation(model, domain, spec)

    # when an anonymous visitor opens the model page
    page = client.get(f"/models/{model.pk}/")

    # then the evaluation is shown, its task spec is not
    assert page.status_code == 200
    assert "50.0%" in page.content.decode() and not _leaks(page.content.decode(), spec)


def test_the_owner_still_sees_her_task_spec_everywhere(secret_spec, user, user_client, client):
    client.force_login(user)
    model = MetaModel.objects.get(name="Public model")
    assert user_client.get(f"/api/v1/models/{model.pk}/").json()["task_spec"] == secret_spec.pk
    assert [e["task_spec"] for e in user_client.get("/api/v1/evaluations/").json()["results"]] == [
        secret_spec.pk
    ]
    assert _leaks(client.get(f"/models/{model.pk}/").content.decode(), secret_spec)
    assert _leaks(client.get("/task-specs/").content.decode(), secret_spec)


# --- 3. A form that refuses its input answers 400, and writes nothing -----------------------------


def _nothing_written(artifacts) -> bool:
    files = [p for p in artifacts.rglob("*") if p.is_file()] if artifacts.exists() else []
    return not files and not SourceDomain.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize(
    "form",
    [
        {"visibility": "public"},
        {"name": "Broken", "visibility": "public", "source": "not-a-zip"},
        {"name": "Broken", "visibility": "everyone", "source": "zip"},
    ],
    ids=["missing fields", "not a zip", "unknown visibility"],
)
def test_the_upload_form_answers_400_on_invalid_input_and_writes_nothing(
    client, user, tmp_path, artifacts_in_tmp, form
):
    # given a logged-in user and an invalid upload
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.learning.factories import make_image_zip

    client.force_login(user)
    data = dict(form)
    if data.get("source") == "zip":
        data["source"] = SimpleUploadedFile(
            "x.zip", make_image_zip(tmp_path / "x.zip", {"a": 3, "b": 3}).read_bytes(), "application/zip"
        )
    elif "source" in data:
        data["source"] = SimpleUploadedFile("x.zip", b"this is not a zip archive", "application/zip")

    # when it is posted
    response = client.post(reverse("domain-upload"), data)

    # then the form comes back with its errors as a 400, and no row or file was written
    assert response.status_code == 400
    assert response.context["form"].errors
    assert 'class="field has-error"' in response.content.decode()
    assert _nothing_written(artifacts_in_tmp)


@pytest.mark.parametrize("page", ["job-launch", "job-transfer"])
def test_the_job_forms_answer_400_on_invalid_input_and_write_nothing(client, user, page):
    # given a logged-in user and a domain
    domain = image_domain(owner=user, classes={f"c{i}": 4 for i in range(6)})
    client.force_login(user)
    before = TaskSpec.objects.count()

    # when a form with a bad value is posted
    response = client.post(reverse(page), {"domain": domain.slug, "n_way": "0", "source_model": "999"})

    # then it comes back as a 400 with its errors, and no job or task spec was written
    assert response.status_code == 400 and response.context["form"].errors
    assert not Job.objects.exists() and TaskSpec.objects.count() == before


def test_a_job_the_service_refuses_is_a_400_with_nothing_written(client, user):
    # given a domain of 6 classes, so a 50-way task cannot be drawn from it
    domain = image_domain(owner=user, classes={f"c{i}": 4 for i in range(6)})
    client.force_login(user)
    form = {
        "domain": domain.slug,
        "algorithm": "protonet",
        "n_way": 50,
        "k_shot": 1,
        "query_size": 1,
        "seed": 0,
        "eval_episodes": 600,
    }

    # when it is posted
    response = client.post(reverse("job-launch"), form)

    # then the service's refusal is shown beside its field as a 400, and no job or task spec was written
    assert response.status_code == 400
    assert "meta_train has only" in str(response.context["form"].errors["n_way"])
    assert not Job.objects.exists() and not TaskSpec.objects.exists()


def test_the_sign_up_form_answers_400_on_invalid_input_and_creates_no_account(client, django_user_model):
    # when the two passwords differ
    response = client.post(
        reverse("signup"),
        {"username": "grace", "password1": "a-long-Passphrase-42", "password2": "another-Passphrase-43"},
    )
    # then the form comes back with its error as a 400, and no account exists or is logged in
    assert response.status_code == 400 and response.context["form"].errors["password2"]
    assert not django_user_model.objects.filter(username="grace").exists()
    assert "_auth_user_id" not in client.session
