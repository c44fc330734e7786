"""Jobs on a text domain, run in this process: meta-training and evaluation read its embeddings, and a
model is evaluated only on domains of its own kind."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from learning.errors import InvalidInput
from learning.models import Evaluation, MetaModel
from learning.services.text_domains import text_domain_import
from tasks_app.runtime import job_run
from tasks_app.services import job_create_evaluate, job_create_meta_train

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
