"""Downloads of a model from its page and the API: the weights file itself, and a model card that
says what it learned from, how it was configured, how it scored, and how to make it again."""

from __future__ import annotations

import hashlib

import pytest
from django.urls import reverse

from learning.models import MetaModel
from learning.services.domains import builtin_domains_register
from learning.services.models import evaluation_create, metamodel_register
from tasks_app.models import Job
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


@pytest.fixture
def digits(db):
    return next(d for d in builtin_domains_register() if d.slug == "digits")


@pytest.fixture
def trained(user, user_client, digits):
    """A MAML model trained by a job of ``user`` (the job made its task spec), evaluated once."""
    body = {
        "domain": "digits",
        "algorithm": "maml",
        "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
        "hyperparameters": {"steps": 30, "meta_batch": 2, "inner_lr": 0.2},
        "model_name": "digits maml",
    }
    job = Job.objects.get(pk=user_client.post("/api/v1/jobs/", body, format="json").json()["id"])
    model = metamodel_register(
        name="digits maml",
        algorithm="maml",
        architecture="conv4",
        weights=model_weights("maml"),
        hyperparameters=job.config["engine"],
        trained_on=[digits],
        task_spec=job.task_spec,
        owner=user,
    )
    Job.objects.filter(pk=job.pk).update(result_model=model, status="succeeded")
    evaluation_create(
        model=model, target_domain=digits, task_spec=job.task_spec, shots=1, metric="accuracy",
        mean=0.812, ci95=0.011, episodes=600, baseline_mean=0.701, baseline_ci95=0.012, gain_ci95=0.009,
    )  # fmt: skip
    return model


def test_the_weights_download_is_the_stored_file_from_the_page_and_the_api(client, api_client, trained):
    for response in (
        client.get(reverse("model-weights", args=[trained.pk])),
        api_client.get(f"/api/v1/models/{trained.pk}/weights/"),
    ):
        assert response.status_code == 200
        body = b"".join(response.streaming_content)
        assert hashlib.sha256(body).hexdigest() == trained.weights_sha256 == response["X-Content-SHA256"]
        assert (
            response["Content-Disposition"] == f'attachment; filename="model-{trained.pk}-maml.safetensors"'
        )


def test_the_model_card_says_data_config_scores_lineage_and_commands(client, user, trained, digits):
    child = metamodel_register(
        name="digits maml, fine-tuned", algorithm="finetune", architecture="conv4_transfer",
        weights=model_weights("finetune"), parent=trained, trained_on=[digits], owner=user,
    )  # fmt: skip

    client.force_login(user)  # jobs, and so the command that trained the model, are their owner's to see
    card = client.get(reverse("model-card", args=[trained.pk])).content.decode()
    child_card = client.get(f"/api/v1/models/{child.pk}/card/").content.decode()

    assert card.startswith("# digits maml\n")
    assert f"sha256 `{trained.weights_sha256}`" in card
    assert "Trained on **digits**" in card and "5-way 1-shot, 5 queries per class" in card
    assert "| `inner_lr` | 0.2 | set |" in card and "| `outer_lr` | 0.001 | default |" in card
    assert "| 81.2% ± 1.1% | 600 | 70.1% | 11.1% ± 0.9% |" in card
    assert "manage.py metatrain --domain digits --algorithm maml" in card
    assert f"manage.py evaluate --model {trained.pk} --task-spec {trained.task_spec_id}" in card
    assert f"/api/v1/models/{trained.pk}/weights/" in card
    assert f"digits maml (#{trained.pk}, maml) → **this model**" in child_card


def test_a_stranger_gets_neither_a_private_models_files_nor_its_name_through_a_childs_card(
    client, stranger, trained
):
    MetaModel.objects.filter(pk=trained.pk).update(visibility="private")
    child = metamodel_register(
        name="public child", algorithm="finetune", architecture="conv4_transfer",
        weights=model_weights("finetune"), parent=trained,
    )  # fmt: skip
    client.force_login(stranger)

    assert client.get(reverse("model-weights", args=[trained.pk])).status_code == 404
    assert client.get(reverse("model-card", args=[trained.pk])).status_code == 404
    card = client.get(reverse("model-card", args=[child.pk])).content.decode()
    assert "Transferred from a model you cannot see." in card and "digits maml" not in card


def test_the_model_page_links_both_downloads(client, trained):
    html = client.get(reverse("model-detail", args=[trained.pk])).content.decode()
    assert f'href="{reverse("model-weights", args=[trained.pk])}"' in html
    assert f'href="{reverse("model-card", args=[trained.pk])}"' in html
