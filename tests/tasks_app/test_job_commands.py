"""The terminal path: metatrain and evaluate run the same services in the foreground."""

from __future__ import annotations

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
