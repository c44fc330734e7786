"""Launching jobs from the API and the form: one validation, field errors, nothing queued on bad input."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.models import TaskSpec
from tasks_app.models import Job

pytestmark = pytest.mark.django_db

GOOD = {
    "domain": "digits",
    "algorithm": "protonet",
    "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
    "hyperparameters": {"steps": 20, "meta_batch": 2},
}


def test_a_valid_request_writes_a_queued_job_and_enqueues_it_on_commit(
    user_client, digits, django_capture_on_commit_callbacks
):
    # given a logged-in user / when they post a valid meta-training request
    with django_capture_on_commit_callbacks() as callbacks:
        response = user_client.post("/api/v1/jobs/", GOOD, format="json")

    # then a queued job exists with the engine's full config, and one enqueue waits for the commit
    assert response.status_code == 201, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.status, job.queue, job.total_steps) == ("queued", "gpu", 20)
    assert job.config["engine"]["task"]["n_way"] == 5
    assert job.config["engine"]["task"]["meta_train_classes"]
    assert len(callbacks) == 2  # the catalog event for the new task spec, and the enqueue


def test_launching_the_same_task_twice_names_one_task_spec(user_client, digits):
    # given two launches of the same task / when both are posted
    first = user_client.post("/api/v1/jobs/", GOOD, format="json").json()
    second = user_client.post("/api/v1/jobs/", GOOD, format="json").json()
    # then both jobs run on one task spec: the same episodes are one task family
    assert first["task_spec"] == second["task_spec"] and TaskSpec.objects.count() == 1

    # when the episodes differ (another seed), or the visibility does, a new spec is made
    reseeded = user_client.post(
        "/api/v1/jobs/", {**GOOD, "task": {**GOOD["task"], "seed": 1}}, format="json"
    ).json()
    private = user_client.post("/api/v1/jobs/", {**GOOD, "visibility": "private"}, format="json").json()
    assert len({first["task_spec"], reseeded["task_spec"], private["task_spec"]}) == 3
    assert TaskSpec.objects.count() == 3


def test_an_unknown_field_in_the_task_is_named_in_the_400(user_client, digits):
    # given a task with a field the API does not have / when posted
    body = {**GOOD, "task": {"n_way": 5, "k_shot": 1, "shots": 1}}
    response = user_client.post("/api/v1/jobs/", body, format="json")
    # then the 400 names it inside the task, and nothing is written
    assert response.status_code == 400
    [message] = response.json()["task"]["shots"]
    assert message.startswith("unknown field; known: k_shot, n_way")
    assert Job.objects.count() == 0 and TaskSpec.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"task": {"n_way": 8, "k_shot": 1, "query_size": 5}},
            "n_way",
            "n_way is 8 but meta_train has only 5",
        ),
        ({"algorithm": "magic"}, "algorithm", "unknown algorithm 'magic'"),
        ({"hyperparameters": {"outer_lr": 0}}, "outer_lr", "outer_lr: must be > 0"),
        ({"hyperparameters": {"outer_lr": -1.0}}, "outer_lr", "must be > 0"),
        ({"hyperparameters": {"steps": 0}}, "steps", "steps: must be between 1 and 200000, got 0"),
        ({"hyperparameters": {"steps": 200001.0}}, "steps", "steps: must be an integer, got 200001.0"),
        ({"hyperparameters": {"meta_batch": 4096.0}}, "meta_batch", "must be an integer"),
        ({"hyperparameters": {"steps": 10**7}}, "steps", "between 1 and 200000"),
        ({"hyperparameters": {"inner_step": 3}}, "inner_step", "unknown setting 'inner_step'"),
        ({"eval_episodes": 100}, "eval_episodes", "from 600 to 20000, got 100"),
        ({"steps": "many"}, "steps", "unknown field; known: "),
        ({"domain": "nope"}, "domain", "no domain 'nope'"),
        (
            {"task": {"n_way": 5, "k_shot": 150, "query_size": 50}},
            "k_shot",
            "k_shot + query_size = 200 exceeds",
        ),
    ],
)
def test_impossible_configs_get_field_errors_and_create_nothing(user_client, digits, change, field, words):
    # given a request with one impossible setting
    body = {**GOOD, **change}

    # when it is posted
    response = user_client.post("/api/v1/jobs/", body, format="json")

    # then it is a 400 naming the field, and no job (nor a task spec for it) was written
    assert response.status_code == 400
    assert words in " ".join(response.json()[field])
    assert Job.objects.count() == 0 and TaskSpec.objects.count() == 0


def test_anonymous_users_cannot_launch(api_client, digits):
    assert api_client.post("/api/v1/jobs/", GOOD, format="json").status_code == 401
    assert Job.objects.count() == 0


def test_a_stranger_cannot_see_or_cancel_a_job(user_client, stranger_client, digits):
    # given ada's job
    job_id = user_client.post("/api/v1/jobs/", GOOD, format="json").json()["id"]

    # then eve gets 404 for it, and it is not in her list
    assert stranger_client.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert stranger_client.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 404
    assert stranger_client.get("/api/v1/jobs/").json()["count"] == 0
    assert user_client.get("/api/v1/jobs/?status=queued").json()["count"] == 1
    assert user_client.get("/api/v1/jobs/?status=running").json()["count"] == 0


def test_cancelling_a_queued_job_is_immediate_and_final(user_client, digits):
    job_id = user_client.post("/api/v1/jobs/", GOOD, format="json").json()["id"]

    response = user_client.post(f"/api/v1/jobs/{job_id}/cancel/")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = user_client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert again.status_code == 400 and "already ended (cancelled)" in again.json()["status"][0]


def _form(**overrides):
    data = {
        "domain": "digits",
        "task_spec": "",
        "n_way": 5,
        "k_shot": 1,
        "query_size": 5,
        "algorithm": "protonet",
        "steps": 20,
        "meta_batch": 2,
        "outer_lr": 0.001,
        "inner_lr": 0.4,
        "inner_steps": 1,
        "lr": 0.0005,
        "seed": 0,
        "eval_episodes": 600,
        "model_name": "",
        "visibility": "public",
    }
    data.update(overrides)
    return data


def test_the_form_launches_a_job(client, user, digits):
    # given a logged-in user on the launch form
    client.force_login(user)
    assert client.get(reverse("job-launch")).status_code == 200

    # when they submit it with defaults
    response = client.post(reverse("job-launch"), _form())

    # then the job is queued and they land on its page
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("job-detail", args=[job.pk])
    assert "inner_lr" not in job.config["engine"]  # ProtoNet has no inner loop; the form leaves it out


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"n_way": 9}, "n_way", "n_way is 9"),
        ({"outer_lr": 0}, "outer_lr", "must be > 0"),
        ({"algorithm": "maml", "inner_steps": 0}, "inner_steps", "between 1 and 100"),
        ({"eval_episodes": 10}, "eval_episodes", "from 600"),
    ],
)
def test_the_form_shows_errors_beside_their_fields_and_creates_nothing(
    client, user, digits, overrides, field, words
):
    client.force_login(user)

    response = client.post(reverse("job-launch"), _form(**overrides))

    assert response.status_code == 400
    assert any(words in e for e in response.context["form"].errors[field])
    assert Job.objects.count() == 0 and TaskSpec.objects.count() == 0


def test_job_pages_need_a_login_and_hide_strangers_jobs(client, user, stranger, user_client, digits):
    job_id = user_client.post("/api/v1/jobs/", GOOD, format="json").json()["id"]
    assert client.get(reverse("job-list")).status_code == 302
    client.force_login(stranger)
    assert client.get(reverse("job-detail", args=[job_id])).status_code == 404
    client.force_login(user)
    page = client.get(reverse("job-detail", args=[job_id]))
    assert page.status_code == 200 and b'id="cancel"' in page.content


def test_the_transfer_form_shows_errors_beside_fields_and_creates_nothing(client, user, digits):
    # given a public source model and a logged-in user
    from learning.services.models import metamodel_register
    from tests.weights import model_weights

    source = metamodel_register(
        name="src", algorithm="protonet", architecture="conv4", weights=model_weights()
    )
    client.force_login(user)
    assert client.get(reverse("job-transfer"), {"source_model": source.pk}).status_code == 200

    # when they ask for more ways than the target's split has classes
    response = client.post(
        reverse("job-transfer"),
        {
            "source_model": source.pk,
            "domain": "digits",
            "task_spec": "",
            "n_way": 9,
            "query_size": 5,
            "seed": 0,
            "method": "finetune",
            "steps": 10,
            "lr": 0.001,
            "eval_episodes": 600,
            "model_name": "",
            "visibility": "public",
        },
    )

    # then the error stands beside n_way and nothing was queued
    assert response.status_code == 400
    assert any("n_way is 9" in e for e in response.context["form"].errors["n_way"])
    assert Job.objects.count() == 0 and TaskSpec.objects.count() == 0


def test_the_transfer_form_offers_l2sp_for_fine_tuning_only(client, user, digits):
    client.force_login(user)
    form = client.get(reverse("job-transfer")).context["form"]
    assert form["l2sp"].label == "L2-SP weight"
    assert form.fields["l2sp"].widget.attrs["data-algorithms"] == "finetune"


def test_the_launch_form_shows_the_automatic_split_before_launch(client, user, digits):
    client.force_login(user)
    html = client.get(reverse("job-launch"), {"domain": "digits"}).content.decode()
    preview = html.split('id="split-preview"')[1].split("</p>")[0]
    assert "automatic split (seed 0) is: meta-train 5 classes · meta-test 5 classes" in preview


def test_every_setting_out_of_bounds_is_named_at_once(client, user, digits):
    client.force_login(user)
    response = client.post(
        reverse("job-launch"), _form(algorithm="maml", outer_lr=0, steps=0, inner_steps=500, meta_batch=1000)
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) >= {"outer_lr", "steps", "inner_steps", "meta_batch"}
    assert "must be > 0" in errors["outer_lr"][0] and "between 1 and 100" in errors["inner_steps"][0]
    assert Job.objects.count() == 0


def test_a_maml_regressor_is_not_offered_as_an_image_source(client, user, user_client, digits):
    from learning.services.models import metamodel_register
    from tests.weights import MLP_CONFIG, model_weights

    sine = metamodel_register(
        name="sine maml", algorithm="maml", architecture="mlp", weights=model_weights("maml", **MLP_CONFIG)
    )
    client.force_login(user)
    offered = dict(client.get(reverse("job-transfer")).context["form"].fields["source_model"].choices)
    assert str(sine.pk) not in offered
    body = {"kind": "transfer", "source_model": sine.pk, "domain": "digits", "method": "finetune"}
    response = user_client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 400 and "no image or text backbone" in response.json()["source_model"][0]
