"""The compare page: runs side by side, differing settings first, scores on one task spec in one row."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from learning.compare import comparison
from learning.errors import InvalidInput
from learning.services.domains import builtin_domains_register
from learning.services.models import evaluation_create, metamodel_register
from learning.services.task_specs import task_spec_create
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(user):
    digits = next(d for d in builtin_domains_register() if d.slug == "digits")
    spec = task_spec_create(domain=digits, n_way=5, query_size=5)
    models = []
    for name, inner_lr, mean in (("slow", 0.1, 0.70), ("fast", 0.4, 0.78)):
        model = metamodel_register(
            name=name, algorithm="maml", architecture="conv4", weights=model_weights("maml"), owner=user,
            hyperparameters={"algorithm": "maml", "inner_lr": inner_lr, "steps": 100, "task": {"n_way": 5}},
        )  # fmt: skip
        evaluation_create(
            model=model, target_domain=digits, task_spec=spec, shots=1, metric="accuracy",
            mean=mean, ci95=0.01, episodes=600,
        )  # fmt: skip
        models.append(model)
    return models


def test_settings_that_differ_come_first_and_scores_on_one_spec_share_a_row(two_models, user):
    slow, fast = two_models

    result = comparison(user=user, model_ids=[str(slow.pk), str(fast.pk)])

    assert [r.label for r in result.runs] == ["slow", "fast"]
    assert [(row.key, row.values) for row in result.differing] == [("inner_lr", ["0.1", "0.4"])]
    assert {row.key for row in result.same} == {"algorithm", "steps", "task.n_way"}
    [row] = result.scores
    assert (row.shots, row.metric) == (1, "Accuracy") and [e.mean for e in row.scores] == [0.70, 0.78]


def test_the_page_shows_the_runs_diff_scores_and_chart_data(client, two_models):
    slow, fast = two_models

    response = client.get(reverse("compare"), {"model": [slow.pk, fast.pk]})

    assert response.status_code == 200
    html = response.content.decode()
    assert (
        'id="compare-settings"' in html
        and '<tr class="differs"><th scope="row" class="mono">inner_lr</th>' in html
    )
    assert "70.0% ± 1.0" in html and "78.0% ± 1.0" in html
    curves = json.loads(
        html.split('id="compare-curves-data" type="application/json">')[1].split("</script>")[0]
    )
    assert [c["key"] for c in curves] == [f"model-{slow.pk}", f"model-{fast.pk}"]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"model": ["x"]}, "model must be ids"),
        ({"model": ["999"]}, "no model 999"),
        ({"job": ["999"]}, "no job 999"),
        ({"model": [str(i) for i in range(1, 10)]}, "compare at most 8 runs"),
    ],
)
def test_bad_selections_are_refused_with_a_message(client, two_models, query, words):
    response = client.get(reverse("compare"), query)
    assert response.status_code == 400 and words in response.content.decode()


def test_a_stranger_cannot_compare_a_private_model(client, stranger, two_models):
    slow, fast = two_models
    slow.visibility = "private"
    slow.save()
    client.force_login(stranger)
    response = client.get(reverse("compare"), {"model": [slow.pk, fast.pk]})
    assert response.status_code == 400 and f"no model {slow.pk}" in response.content.decode()
    assert "slow" not in response.content.decode()
    with pytest.raises(InvalidInput):
        comparison(user=stranger, model_ids=[str(slow.pk)])


def test_the_model_list_offers_to_compare_what_is_ticked(client, two_models):
    html = client.get(reverse("model-list")).content.decode()
    assert (
        'id="compare-form"' in html and f'name="model" value="{two_models[0].pk}" form="compare-form"' in html
    )


def test_a_job_compares_by_its_engine_config_and_curve(two_models, user, user_client):
    body = {
        "domain": "digits",
        "algorithm": "maml",
        "task": {"n_way": 5, "query_size": 5},
        "hyperparameters": {"steps": 7},
    }
    job_id = user_client.post("/api/v1/jobs/", body, format="json").json()["id"]
    from tasks_app.models import Job

    Job.objects.filter(pk=job_id).update(history=[{"step": 1, "loss": 2.0}, {"step": 7, "loss": 1.5}])

    result = comparison(user=user, model_ids=[str(two_models[0].pk)], job_ids=[str(job_id)])

    assert [r.key for r in result.runs] == [f"model-{two_models[0].pk}", f"job-{job_id}"]
    assert result.curves()[1]["history"][-1] == {"step": 7, "loss": 1.5}
    steps = next(row for row in result.settings if row.key == "steps")
    assert steps.values == ["100", "7"] and steps.differs


def test_the_model_list_sorts_by_best_accuracy_filters_by_owner_and_shows_scores(
    client, two_models, stranger
):
    metamodel_register(
        name="stranger's", algorithm="protonet", architecture="conv4", weights=model_weights(), owner=stranger
    )

    by_accuracy = client.get(reverse("model-list"), {"sort": "accuracy"}).content.decode()
    assert by_accuracy.index(">fast<") < by_accuracy.index(">slow<") < by_accuracy.index(">stranger&#x27;s<")
    assert "78.0%" in by_accuracy and "70.0%" in by_accuracy

    mine = client.get(reverse("model-list"), {"owner": "ada"}).content.decode()
    assert ">fast<" in mine and "stranger&#x27;s" not in mine
