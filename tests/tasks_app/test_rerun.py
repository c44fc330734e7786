"""Running a job again: the form pre-filled from it, its settings as JSON, and the command to launch it."""

from __future__ import annotations

import io
import json
import shlex

import pytest
from django.core.management import call_command
from django.urls import reverse

from tasks_app.models import Job
from tasks_app.rerun import job_rerun

pytestmark = pytest.mark.django_db

MAML = {
    "domain": "digits",
    "algorithm": "maml",
    "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
    "hyperparameters": {"steps": 30, "meta_batch": 2, "inner_lr": 0.2, "model": {"hidden": 16}},
    "eval_episodes": 700,
    "model_name": "small maml",
}


def _form_values(form) -> dict:
    """What the browser would post for an untouched form: each field's shown value."""
    values = {}
    for name in form.fields:
        value = form[name].value()
        if value is not None and value != "" and value is not False:
            values[name] = value
    return values


def test_the_prefilled_form_launches_the_same_job_on_the_same_task_spec(client, user, user_client, digits):
    # given a MAML job with settings of its own, one of them (model.hidden) not on the form
    first = Job.objects.get(pk=user_client.post("/api/v1/jobs/", MAML, format="json").json()["id"])
    client.force_login(user)

    # when its owner opens "re-run" and submits the form as it comes
    page = client.get(reverse("job-launch"), {"rerun": first.pk})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="rerun-note"' in html and "<code>model.hidden</code>" in html
    response = client.post(reverse("job-launch"), _form_values(page.context["form"]))

    # then the new job has the first one's task spec and engine config, but for the setting the form lacks
    assert response.status_code == 302, response.context["form"].errors
    second = Job.objects.exclude(pk=first.pk).get()
    assert second.task_spec_id == first.task_spec_id
    assert second.config["eval_episodes"] == 700 and second.config["model_name"] == "small maml"
    engine_1, engine_2 = dict(first.config["engine"]), dict(second.config["engine"])
    assert engine_1.pop("model") == {"arch": "conv4", "hidden": 16, "layers": 4}
    assert engine_2.pop("model")["hidden"] == 64
    assert engine_2 == engine_1


def test_the_command_launches_exactly_the_same_job(user, user_client, digits):
    # given a job / when the command its page shows is run (queued rather than run here)
    first = Job.objects.get(pk=user_client.post("/api/v1/jobs/", MAML, format="json").json()["id"])
    rerun = job_rerun(first)
    argv = shlex.split(rerun.command)
    assert argv[:3] == [".venv/bin/python", "manage.py", "metatrain"]
    call_command(*argv[2:], "--queue", stdout=io.StringIO())

    # then the settings, the task spec, the owner and everything else are the first job's
    second = Job.objects.exclude(pk=first.pk).get()
    assert second.config == first.config and second.task_spec_id == first.task_spec_id
    assert second.owner == first.owner == user
    # and the JSON holds only what differs from MAML's defaults
    hyperparameters = json.loads(argv[argv.index("--hyperparameters") + 1])
    assert hyperparameters == rerun.hyperparameters
    assert hyperparameters["model"] == {"hidden": 16} and hyperparameters["steps"] == 30
    assert "outer_lr" not in hyperparameters and "rotations" not in hyperparameters


def test_the_job_page_shows_a_readable_config_with_rerun_and_copy(client, user, user_client, digits):
    job_id = user_client.post("/api/v1/jobs/", MAML, format="json").json()["id"]
    client.force_login(user)

    html = client.get(reverse("job-detail", args=[job_id])).content.decode()

    # a flat table of dotted keys, not a pprint of the nested config
    assert "task.meta_train_classes" in html and "model.hidden" in html
    assert "'meta_train_classes': [" not in html
    assert f'href="{reverse("job-launch")}?rerun={job_id}"' in html
    assert 'id="job-config-json"' in html and 'id="job-command"' in html
    assert "700 evaluation episodes" in html


def test_someone_elses_job_cannot_be_rerun(client, stranger, user_client, digits):
    job_id = user_client.post("/api/v1/jobs/", MAML, format="json").json()["id"]
    client.force_login(stranger)
    assert client.get(reverse("job-launch"), {"rerun": job_id}).status_code == 404


def test_a_transfer_job_names_its_source_and_reruns_through_the_transfer_form(
    client, user, user_client, digits
):
    from learning.services.models import metamodel_register
    from tests.weights import model_weights

    source = metamodel_register(
        name="src", algorithm="protonet", architecture="conv4", weights=model_weights()
    )
    body = {
        "kind": "transfer",
        "source_model": source.pk,
        "domain": "digits",
        "method": "finetune",
        "task": {"n_way": 3, "query_size": 5},
        "hyperparameters": {"steps": 10, "l2sp": 0.5},
    }
    response = user_client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    client.force_login(user)

    html = client.get(reverse("job-detail", args=[job_id])).content.decode()
    assert 'id="source-model-link"' in html and f'href="/models/{source.pk}/"' in html
    assert f'href="{reverse("job-transfer")}?rerun={job_id}"' in html

    form = client.get(reverse("job-transfer"), {"rerun": job_id}).context["form"]
    assert form["source_model"].value() == str(source.pk) and form["method"].value() == "finetune"
    assert form["l2sp"].value() == 0.5 and form["steps"].value() == 10
    assert "--source-model" in job_rerun(Job.objects.get(pk=job_id)).command


def test_an_evaluation_job_page_shows_its_config_without_a_rerun(client, user, digits):
    from learning.services.models import metamodel_register
    from learning.services.task_specs import task_spec_create
    from tasks_app.services import job_create_evaluate
    from tests.weights import model_weights

    spec = task_spec_create(domain=digits, n_way=5, query_size=5)
    model = metamodel_register(
        name="m", algorithm="protonet", architecture="conv4", weights=model_weights(), task_spec=spec
    )
    job = job_create_evaluate(owner=user, model_id=model.pk, enqueue=False)
    client.force_login(user)

    page = client.get(reverse("job-detail", args=[job.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "eval_episodes" in html and 'id="rerun"' not in html
