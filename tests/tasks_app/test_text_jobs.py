"""Jobs on text domains, run in this process: meta-training, evaluation and transfer read their
embeddings, the transfer matrix and recommendations cover them, and a model is evaluated or
transferred only on domains of its own kind."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from learning.errors import InvalidInput
from learning.models import Evaluation, MetaModel
from learning.recommend import recommend_sources
from learning.selectors import transfer_matrix
from learning.services.text_domains import text_domain_import
from tasks_app.models import Job
from tasks_app.runtime import job_run
from tasks_app.services import job_create_evaluate, job_create_meta_train, job_create_transfer

pytestmark = pytest.mark.django_db

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


@pytest.fixture
def text_domain(user, artifacts_in_tmp):
    rows = ["text,label"] + [f"{w} number {i} of {w},{w}" for w in WORDS for i in range(4)]
    upload = SimpleUploadedFile("words.csv", "\n".join(rows).encode())
    return text_domain_import(source=upload, name="Words", owner=user)


def test_a_text_model_trains_and_is_evaluated_on_its_domain_s_held_out_labels(
    user, text_domain, digits, redis_server
):
    job = job_create_meta_train(
        owner=user,
        domain_slug=text_domain.slug,
        algorithm="protonet",
        hyperparameters={"steps": 5, "meta_batch": 1},
        task={"n_way": 2, "k_shot": 1, "query_size": 2},
        enqueue=False,
    )
    job_run(job_id=job.pk, worker_host="here")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_traceback
    model = MetaModel.objects.get(pk=job.result_model_id)
    assert (model.architecture, list(model.trained_on.all())) == ("text_mlp", [text_domain])

    again = job_create_evaluate(owner=user, model_id=model.pk, enqueue=False)
    job_run(job_id=again.pk, worker_host="here")

    again.refresh_from_db()
    assert again.status == "succeeded", again.error_traceback
    scores = Evaluation.objects.filter(model=model)
    assert scores.count() == 2 and all(e.episodes >= 600 and 0 <= e.mean <= 1 for e in scores)

    # a text model is not evaluated on an image task spec, and the message says why
    image_job = job_create_meta_train(
        owner=user, domain_slug=digits.slug, algorithm="protonet", task={"n_way": 5}, enqueue=False
    )
    with pytest.raises(InvalidInput, match="this text model is evaluated on text domains") as err:
        job_create_evaluate(owner=user, model_id=model.pk, task_spec_id=image_job.task_spec_id, enqueue=False)
    assert err.value.field == "task_spec"


def test_a_text_model_transfers_to_another_text_domain_and_is_ranked_for_it(
    user, text_domain, digits, redis_server
):
    # given a ProtoNet meta-trained on one text domain, and a second text domain
    trained = job_create_meta_train(
        owner=user,
        domain_slug=text_domain.slug,
        algorithm="protonet",
        hyperparameters={"steps": 5, "meta_batch": 1},
        task={"n_way": 2, "k_shot": 1, "query_size": 2},
        enqueue=False,
    )
    job_run(job_id=trained.pk, worker_host="here")
    source = MetaModel.objects.get(pk=Job.objects.get(pk=trained.pk).result_model_id)
    rows = ["text,label"] + [
        f"the {w} of {i} and {w},{w}" for w in ("kilo", "lima", "mike", "oscar") for i in range(6)
    ]
    target = text_domain_import(
        source=SimpleUploadedFile("other.csv", "\n".join(rows).encode()),
        name="Other words",
        owner=user,
    )

    # when it is fine-tuned onto the second domain by a transfer job
    job = job_create_transfer(
        owner=user,
        source_model_id=source.pk,
        target_domain_slug=target.slug,
        method="finetune",
        hyperparameters={"steps": 5},
        task={"n_way": 2, "k_shot": 1, "query_size": 2},
        enqueue=False,
    )
    job_run(job_id=job.pk, worker_host="here")

    # then the transferred model is compared with scratch on the target, and the matrix shows the gain
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_traceback
    gains = Evaluation.objects.filter(model_id=job.result_model_id, baseline_mean__isnull=False)
    assert gains.exists() and all(e.target_domain == target and e.episodes >= 600 for e in gains)
    matrix = transfer_matrix(user=user, shots=gains.first().shots)
    assert (source.pk, target.pk) in matrix.cells
    # and the text models are ranked for the text target by LogME on its embeddings
    ranking = recommend_sources(user=user, target=target)
    assert {r.model.pk for r in ranking.recommendations} >= {source.pk}
    assert all(np.isfinite(r.logme) for r in ranking.recommendations)
    # and a text model is not transferred onto images, by name
    with pytest.raises(InvalidInput, match="this text model transfers to text domains") as err:
        job_create_transfer(
            owner=user,
            source_model_id=source.pk,
            target_domain_slug=digits.slug,
            method="finetune",
            enqueue=False,
        )
    assert err.value.field == "domain"
