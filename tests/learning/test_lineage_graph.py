"""A model page draws its lineage: data, task spec and job of each model, oldest first, then transfers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.selectors import metamodel_lineage_graph
from learning.services.models import metamodel_register
from tasks_app.models import Job
from tests.learning.test_downloads import digits, trained  # noqa: F401 (fixtures)
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


def test_each_step_links_its_data_spec_job_and_model(client, user, trained, digits):  # noqa: F811
    child = metamodel_register(
        name="child", algorithm="finetune", architecture="conv4_transfer",
        weights=model_weights("finetune"), parent=trained, trained_on=[digits], owner=user,
    )  # fmt: skip
    grandchild = metamodel_register(
        name="grandchild", algorithm="finetune", architecture="conv4_transfer",
        weights=model_weights("finetune"), parent=child, owner=user,
    )  # fmt: skip
    job = Job.objects.get(result_model=trained)
    client.force_login(user)

    html = client.get(reverse("model-detail", args=[child.pk])).content.decode()

    graph = html.split('id="lineage-graph"')[1].split("</ol>")[0]
    order = [
        reverse("domain-detail", args=["digits"]),
        reverse("taskspec-detail", args=[trained.task_spec_id]),
        reverse("job-detail", args=[job.pk]),
        reverse("model-detail", args=[trained.pk]),
        '<strong class="node model">child</strong>',
        reverse("model-detail", args=[grandchild.pk]),
    ]
    positions = [graph.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_an_anonymous_reader_sees_no_job(trained):  # noqa: F811
    from django.contrib.auth.models import AnonymousUser

    [step] = metamodel_lineage_graph(user=AnonymousUser(), model=trained)
    assert step.is_self and step.job_id is None and step.task_spec is not None and step.domains
