"""A transfer job end to end: transferred model and from-scratch baseline, compared on identical episodes."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from learning.models import Evaluation, MetaModel
from tasks_app.models import Job
from tests.learning.factories import image_domain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TINY = '{"steps": 20, "meta_batch": 1, "model": {"hidden": 8}}'


@pytest.fixture
def source_model(digits, django_user_model, redis_server):
    django_user_model.objects.create_superuser(username="root", password="pw-root-123456")
    call_command(
        "metatrain",
        "--domain",
        "digits",
        "--algorithm",
        "protonet",
        "--n-way",
        "5",
        "--query",
        "5",
        "--hyperparameters",
        TINY,
        "--name",
        "source",
        stdout=io.StringIO(),
    )
    return MetaModel.objects.get(name="source")


def test_a_transfer_registers_a_child_model_with_gains_at_every_possible_shot(source_model, api_client):
    # given a target domain of 10 classes with 12 images each (meta-test: 5 classes)
    target = image_domain(name="Target", classes={f"c{i}": 12 for i in range(10)})
    out = io.StringIO()

    # when the source is fine-tuned onto it
    call_command(
        "transfer",
        "--source-model",
        str(source_model.pk),
        "--target",
        target.slug,
        "--method",
        "finetune",
        "--query",
        "5",
        "--hyperparameters",
        '{"steps": 15}',
        stdout=out,
    )

    # then a child model of the source stands in the catalog, trained on the target
    job = Job.objects.get(kind="transfer")
    assert job.status == "succeeded", job.error_traceback
    child = job.result_model
    assert child.parent == source_model and list(child.trained_on.all()) == [target]
    # and it was compared with training from scratch at 1 and 5 shots (5 + 5 queries fit in 12 images)
    rows = {e.shots: e for e in Evaluation.objects.filter(model=child)}
    assert sorted(rows) == [1, 5]
    for row in rows.values():
        assert row.episodes == 600 and row.baseline_mean is not None and row.gain_ci95 > 0
        assert row.gain == pytest.approx(row.mean - row.baseline_mean)
    assert "gain" in out.getvalue()
    cells = api_client.get("/api/v1/transfer-matrix/?shots=5").json()["cells"]
    # and the transfer matrix credits the 5-shot gain to the KB source, pointing at the child
    assert [(c["source"], c["model"], c["target"]) for c in cells] == [
        (source_model.pk, child.pk, target.slug)
    ]


def test_impossible_transfers_are_refused_before_anything_is_queued(source_model, user_client):
    target = image_domain(name="Small target", classes={f"c{i}": 4 for i in range(10)})
    before = Job.objects.count()
    cases = [
        ({"method": "telepathy"}, "method", "unknown transfer method"),
        ({"source_model": 999999}, "source_model", "no model"),
        ({"domain": "nowhere"}, "domain", "no domain"),
        (
            {"task": {"n_way": 5, "k_shot": 1, "query_size": 4}},
            "k_shot",
            "k_shot + query_size = 5 exceeds the 4",
        ),
        ({"hyperparameters": {"lr": -1}}, "lr", "must be > 0"),
    ]
    for change, field, words in cases:
        body = {
            "kind": "transfer",
            "source_model": source_model.pk,
            "domain": target.slug,
            "method": "finetune",
            "task": {"n_way": 5, "k_shot": 1, "query_size": 2},
            **change,
        }
        response = user_client.post("/api/v1/jobs/", body, format="json")
        assert response.status_code == 400, (change, response.json())
        assert words in " ".join(response.json()[field]), response.json()
    assert Job.objects.count() == before
    with pytest.raises(CommandError, match="method: unknown transfer method"):
        call_command(
            "transfer",
            "--source-model",
            str(source_model.pk),
            "--target",
            target.slug,
            "--method",
            "x",
            "--query",
            "2",
        )
