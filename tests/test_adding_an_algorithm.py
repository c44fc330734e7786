"""Adding an algorithm is one module and its config dataclass: it then shows in the engine, the
launch form, the API (and its schema) without another list to edit."""

from __future__ import annotations

import importlib

import pytest

from learning.engine.algorithms import ConfigError, unregister_algorithm, validate_config
from learning.engine.experiments import EpisodePlan, meta_train_and_evaluate
from learning.services.domains import builtin_domains_register
from tasks_app.forms import MetaTrainForm
from tasks_app.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def toy():
    module = importlib.reload(importlib.import_module("tests.toy_algorithm"))
    yield module
    unregister_algorithm(module.NAME)


def test_the_engine_validates_and_trains_the_new_algorithm(toy, omniglot_small1):
    # given the toy's own setting, out of its declared bounds / then the engine names it
    with pytest.raises(ConfigError) as err:
        validate_config({"algorithm": toy.NAME, "temperature": 0})
    assert err.value.field == "temperature" and "must be > 0" in str(err.value)
    # when it runs through the experiment protocol on tiny budgets
    task = {"n_way": 3, "k_shot": 1, "query": 1, "meta_train_groups": ["Greek"]}
    config = {"algorithm": toy.NAME, "model": {"hidden": 8}, "task": task, "steps": 2, "device": "cpu"}
    korean = [c for c in range(omniglot_small1.num_classes) if omniglot_small1.class_groups[c] == "Korean"]
    plan = EpisodePlan(n_way=3, k_shot=1, query=1, classes=korean, episodes=5, strict=False)
    report = meta_train_and_evaluate(config, omniglot_small1, plan)
    # then it trained and was scored, with its setting's default in the validated config
    assert report.result.steps_done == 2 and report.scores[0].episodes == 5
    assert validate_config(config)["temperature"] == 1.0


def test_the_launch_form_offers_it_with_its_setting(toy):
    form = MetaTrainForm(domains=[], task_specs=[])
    assert (toy.NAME, "Toy ProtoNet") in form.fields["algorithm"].choices
    field = form.fields["temperature"]
    assert field.widget.attrs["max"] == 100.0 and field.initial == 1.0
    assert form["temperature"] in form.setting_fields
    assert field.widget.attrs["data-algorithms"] == toy.NAME


def test_the_api_schema_lists_it_and_its_settings(toy, client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    job = schema["components"]["schemas"]["JobCreate"]["properties"]
    toy_schema = next(s for s in job["hyperparameters"]["oneOf"] if s["title"] == toy.NAME)
    assert toy_schema["properties"]["temperature"]["maximum"] == 100.0
    assert "task" not in toy_schema["properties"]  # the task spec sets it, not the user
    enums = [s for name, s in schema["components"]["schemas"].items() if name.startswith("Algorithm")]
    assert any(toy.NAME in s.get("enum", []) for s in enums)


def test_a_job_of_the_new_algorithm_is_accepted_by_the_api(toy, user_client):
    builtin_domains_register()
    request = {
        "domain": "digits",
        "algorithm": toy.NAME,
        "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
        "hyperparameters": {"steps": 3, "temperature": 2.5},
    }
    response = user_client.post("/api/v1/jobs/", request, format="json")
    assert response.status_code == 201, response.json()
    engine = Job.objects.get(pk=response.json()["id"]).config["engine"]
    assert (engine["algorithm"], engine["temperature"], engine["steps"]) == (toy.NAME, 2.5, 3)
    # and a bad value is refused on its field
    request["hyperparameters"] = {"temperature": -1}
    refused = user_client.post("/api/v1/jobs/", request, format="json")
    assert refused.status_code == 400 and "temperature" in refused.json()
