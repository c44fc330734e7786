"""The terminal path: metatrain and evaluate run the same services in the foreground."""

from __future__ import annotations

import asyncio
import io

import pytest
from django.core.management import CommandError, call_command

from learning.models import Evaluation, MetaModel
from tasks_app.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_metatrain_then_evaluate_in_the_foreground(digits, django_user_model, redis_server):
    # given an admin
    django_user_model.objects.create_superuser(username="root", password="pw-root-123456")
    out = io.StringIO()

    # when a tiny ProtoNet is meta-trained from the command line
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
        '{"steps": 20, "meta_batch": 1, "model": {"hidden": 8}}',
        "--name",
        "cli net",
        stdout=out,
    )

    # then it drew a progress bar, registered the model and its evaluation, and printed the result
    model = MetaModel.objects.get(name="cli net")
    assert "20/20" in out.getvalue() and "95% CI, 600 episodes" in out.getvalue()
    assert Evaluation.objects.filter(model=model).count() == 1

    # when the model is evaluated again with more episodes
    call_command("evaluate", "--model", str(model.pk), "--episodes", "700", stdout=out)

    # then a second evaluation of 700 episodes exists, from an evaluate job
    assert Evaluation.objects.filter(model=model, episodes=700).count() == 1
    assert Job.objects.filter(kind="evaluate", status="succeeded").count() == 1


def test_the_commands_refuse_bad_input_by_name(digits, django_user_model):
    django_user_model.objects.create_superuser(username="root", password="pw-root-123456")
    with pytest.raises(CommandError, match="n_way: n_way is 9"):
        call_command("metatrain", "--domain", "digits", "--algorithm", "protonet", "--n-way", "9")
    with pytest.raises(CommandError, match="model: no model 12345"):
        call_command("evaluate", "--model", "12345")
    assert Job.objects.count() == 0


def test_a_neural_process_meta_trains_on_a_function_domain(django_user_model, redis_server):
    # given the built-in function domains and an admin
    from learning.services.domains import builtin_domains_register

    builtin_domains_register()
    django_user_model.objects.create_superuser(username="root", password="pw-root-123456")

    # when a CNP is meta-trained on gp-1d with 10 context points
    call_command(
        "metatrain",
        "--domain",
        "gp-1d",
        "--algorithm",
        "cnp",
        "--k-shot",
        "10",
        "--query",
        "20",
        "--hyperparameters",
        '{"steps": 30}',
        "--name",
        "cli cnp",
        stdout=io.StringIO(),
    )

    # then its MSE and log-likelihood on 600 held-out functions are recorded
    model = MetaModel.objects.get(name="cli cnp")
    metrics = {e.metric: e for e in Evaluation.objects.filter(model=model)}
    assert set(metrics) == {"mse", "log_likelihood"}
    assert all(e.episodes == 600 and e.shots == 10 and e.ci95 > 0 for e in metrics.values())


def test_maml_meta_trains_on_a_function_domain_and_predicts_through_the_api(django_user_model, redis_server):
    # given the built-in function domains and an admin
    from rest_framework.test import APIClient

    from learning.services.domains import builtin_domains_register

    builtin_domains_register()
    django_user_model.objects.create_superuser(username="root", password="pw-root-123456")

    # when MAML is meta-trained on sinusoids with 5 context points
    call_command(
        "metatrain",
        *("--domain", "sinusoid", "--algorithm", "maml", "--k-shot", "5", "--query", "10"),
        *("--hyperparameters", '{"steps": 20, "meta_batch": 4}', "--name", "cli sine maml"),
        stdout=io.StringIO(),
    )

    # then its MSE after its adaptation steps on 600 held-out sine tasks is recorded (no likelihood)
    model = MetaModel.objects.get(name="cli sine maml")
    [evaluation] = Evaluation.objects.filter(model=model)
    assert (evaluation.metric, evaluation.episodes, evaluation.shots) == ("mse", 600, 5)
    assert 0 < evaluation.mean < 10 and evaluation.ci95 > 0
    # and it predicts from a user's points through the API, a mean per query x and no std
    body = {"support": {"x": [-2.0, 0.0, 2.0], "y": [0.5, 1.0, 0.5]}, "query": {"x": [-1.0, 1.0]}}
    answer = APIClient().post(f"/api/v1/models/{model.pk}/predict/", body, format="json")
    assert answer.status_code == 200, answer.json()
    assert len(answer.json()["predictions"]) == 2


def test_the_evaluation_phase_reports_episodes_done_of_the_total_with_an_eta(
    digits, django_user_model, redis_server
):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from tasks_app.events import dashboard_group

    # given an admin whose dashboard group is listened to
    admin = django_user_model.objects.create_superuser(username="root", password="pw-root-123456")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(dashboard_group(admin.pk), channel)

    # when a tiny ProtoNet is meta-trained and evaluated on 1,200 episodes
    call_command(
        "metatrain",
        *("--domain", "digits", "--algorithm", "protonet", "--n-way", "5", "--query", "5"),
        *("--hyperparameters", '{"steps": 10, "meta_batch": 1, "model": {"hidden": 8}}'),
        *("--eval-episodes", "1200"),
        stdout=io.StringIO(),
    )

    # then the evaluation phase was reported in episodes, up to the total, with an ETA
    async def sent() -> list[dict]:
        payloads = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=2)
            except TimeoutError:
                return payloads
            payloads.append(message["payload"])

    events = async_to_sync(sent)()
    evaluating = [e for e in events if e["phase"] == "evaluating" and e["phase_total"]]
    assert evaluating, [e["phase"] for e in events]
    assert {e["phase_total"] for e in evaluating} == {1200}
    done = [e["phase_done"] for e in evaluating]
    assert done == sorted(done) and done[-1] == 1200
    assert evaluating[-1]["eta_seconds"] == 0.0
    assert all(e["eta_seconds"] is None or e["eta_seconds"] >= 0 for e in evaluating)
    # and the finished job shows no phase progress any more
    job = Job.objects.get(kind="meta_train")
    assert job.status == "succeeded" and job.phase_total == 0 and job.eta_seconds is None
