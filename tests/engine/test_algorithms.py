"""The six image algorithms through the public entry point: config errors, exact resume, stop, learning."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from learning.engine.algorithms import REGISTRY, ConfigError, available_algorithms, train, validate_config
from learning.engine.checkpoints import InMemoryCheckpointStore
from learning.engine.evaluation import evaluate_classifier, evaluate_model, paired_comparison
from learning.engine.nets import build_model

IMAGE_ALGORITHMS = ["maml", "fomaml", "reptile", "protonet", "siamese", "statistician"]
HELD_OUT = ("Japanese_(katakana)", "Sanskrit", "Tagalog")


def _tiny(algorithm: str, **over) -> dict:
    config = {
        "algorithm": algorithm,
        "model": {"hidden": 8},
        "task": {"n_way": 3, "k_shot": 1, "query": 1, "meta_train_groups": ["Greek", "Latin"]},
        "steps": 4,
        "meta_batch": 2,
        "device": "cpu",
        "checkpoint_every": 0,
        "seed": 11,
    }
    if algorithm in ("maml", "fomaml", "reptile"):
        config.update(inner_steps=2, task_chunk=1)
    return {**config, **over}


def _held_out(data) -> list[int]:
    return [c for c in range(data.num_classes) if data.class_groups[c] in HELD_OUT]


def test_the_registry_has_the_six_image_algorithms():
    assert set(IMAGE_ALGORITHMS) <= {name for name, domain in REGISTRY if domain == "image"}
    assert set(IMAGE_ALGORITHMS) <= set(available_algorithms()["image"])


@pytest.mark.parametrize("algorithm", IMAGE_ALGORITHMS)
def test_validation_fills_defaults(algorithm):
    # given the smallest config / when validated
    full = validate_config({"algorithm": algorithm})
    # then every setting is present and the input is untouched
    assert full["domain"] == "image" and full["device"] == "auto" and full["seed"] == 0
    assert full["task"]["n_way"] == 5 and full["model"] == {"arch": "conv4", "hidden": 64, "layers": 4}
    assert ("inner_lr" in full) == (algorithm in ("maml", "fomaml", "reptile"))
    assert validate_config(full) == full


def test_a_config_stored_before_evaluation_left_training_still_validates():
    # given a job config of an earlier version, with its "no evaluation" settings
    stored = {"algorithm": "maml", "eval_episodes": 0, "eval_classes": None, "eval_within_group": False}
    # when validated / then it is today's config
    assert validate_config(stored) == validate_config({"algorithm": "maml"})


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"algorithm": "magic"}, "algorithm", "unknown algorithm 'magic'"),
        ({"algorithm": None}, "algorithm", "is required"),
        ({"steps": 0}, "steps", "must be between 1 and 200000, got 0"),
        ({"steps": 200001.0}, "steps", "must be an integer, got 200001.0"),
        ({"steps": True}, "steps", "must be an integer, got True"),
        ({"meta_batch": "32"}, "meta_batch", "must be an integer, got '32'"),
        ({"inner_lr": -0.1}, "inner_lr", "must be > 0 and <= 100, got -0.1"),
        ({"outer_lr": float("nan")}, "outer_lr", "must be finite"),
        ({"device": "tpu"}, "device", "got 'tpu'"),
        ({"rotations": "yes"}, "rotations", "must be true or false, got 'yes'"),
        ({"inner_step": 3}, "inner_step", "unknown setting 'inner_step'"),
        ({"task": {"n_way": 1}}, "task.n_way", "must be between 2 and 1000, got 1"),
        ({"task": {"shots": 1}}, "task.shots", "unknown setting"),
        ({"task": {"meta_train_classes": [1, 1]}}, "task.meta_train_classes", "repeated entries [1]"),
        (
            {"task": {"meta_train_classes": [0], "meta_train_groups": ["a"]}},
            "task.meta_train_groups",
            "not both",
        ),
        ({"model": {"arch": "resnet"}}, "model.arch", "got 'resnet'"),
        ({"model": []}, "model", "must be an object"),
        ({"eval_episodes": 10}, "eval_episodes", "unknown setting 'eval_episodes'"),
        ({"domain": "audio"}, "domain", "no 'audio' variant"),
    ],
)
def test_each_bad_setting_is_reported_with_its_field_and_value(change, field, text):
    # given a MAML config with one bad setting / when validated
    with pytest.raises(ConfigError) as info:
        validate_config({"algorithm": "maml", **change})
    # then the error names the field and the bad value
    assert info.value.field == field
    assert text in str(info.value) and str(info.value).startswith(field)


@pytest.mark.parametrize(
    ("task", "extra", "field", "text"),
    [
        (
            {"n_way": 30, "meta_train_groups": ["Greek"]},
            {"rotations": False},
            "task.n_way",
            "n_way = 30 but only 24",
        ),
        ({"k_shot": 15, "query": 6}, {}, "task.k_shot", "= 21 exceeds the 20 examples"),
        ({"meta_train_groups": ["Klingon"]}, {}, "task.meta_train_groups", "unknown groups ['Klingon']"),
        ({"meta_train_classes": [0, 500]}, {}, "task.meta_train_classes", "[500] are outside 0..135"),
        ({"n_way": 41, "within_group": True}, {"rotations": False}, "task.within_group", "'Korean', has 40"),
    ],
)
def test_data_dependent_errors_name_the_numbers(omniglot_small1, task, extra, field, text):
    # given a config that the data cannot satisfy / when trained / then a ConfigError on the right field
    config = {**_tiny("protonet", **extra), "task": task}
    with pytest.raises(ConfigError) as info:
        train(config, omniglot_small1)
    assert info.value.field == field and text in str(info.value)


@pytest.mark.parametrize("algorithm", IMAGE_ALGORITHMS)
def test_resume_after_a_stop_ends_bitwise_equal_to_an_uninterrupted_run(omniglot_small1, algorithm):
    # given an uninterrupted run
    config = _tiny(algorithm)
    full = train(config, omniglot_small1)
    # when another run is stopped at its 4th poll of should_stop (mid-step for the chunked inner-loop
    # methods, which poll between chunks) and resumed from its checkpoint
    store = InMemoryCheckpointStore()
    polls = iter(range(100))
    stopped = train(config, omniglot_small1, should_stop=lambda: next(polls) >= 3, checkpoint=store)
    resumed = train(config, omniglot_small1, checkpoint=store)
    # then the final weights are bitwise equal, and the run really changed them
    assert stopped.stopped and 1 <= stopped.steps_done <= 3 and store.saves == [stopped.steps_done, 4]
    assert resumed.steps_done == 4 and not resumed.stopped
    for name, value in full.weights.items():
        assert torch.equal(value, resumed.weights[name]), name
    assert any(not torch.equal(full.weights[k], stopped.weights[k]) for k in full.weights)


def test_a_different_seed_gives_different_weights(omniglot_small1):
    a = train(_tiny("protonet", steps=2), omniglot_small1)
    b = train(_tiny("protonet", steps=2, seed=12), omniglot_small1)
    assert any(not torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_a_stop_request_takes_effect_within_a_second_mid_meta_batch(omniglot_small1):
    # given a full-size MAML step (Conv4-64, meta-batch 32) whose tasks run in chunks of 4
    config = {
        "algorithm": "maml",
        "task": {"n_way": 5, "k_shot": 1, "query": 1},
        "steps": 1000,
        "meta_batch": 32,
        "task_chunk": 4,
        "device": "cpu",
    }
    flag = threading.Event()
    asked_at: list[float] = []

    def should_stop() -> bool:
        if flag.is_set() and not asked_at:
            asked_at.append(time.monotonic())
        return flag.is_set()

    timer = threading.Timer(1.0, flag.set)
    store = InMemoryCheckpointStore()
    # when a stop is requested while training runs
    timer.start()
    result = train(config, omniglot_small1, should_stop=should_stop, checkpoint=store)
    latency = time.monotonic() - asked_at[0]
    # then training ended within a second of the first poll that saw it, with a checkpoint
    assert result.stopped and store.saves == [result.steps_done]
    assert latency < 1.0, latency


@pytest.mark.slow
def test_protonet_learns_to_classify_alphabets_it_never_saw(omniglot_small1, omniglot_small2):
    # given ProtoNet meta-trained on small1's alphabets for 150 episodes
    config = {
        "algorithm": "protonet",
        "model": {"hidden": 16},
        "task": {"n_way": 5, "k_shot": 1, "query": 5},
        "steps": 150,
        "device": "cpu",
        "checkpoint_every": 0,
    }
    events: list[dict] = []
    result = train(config, omniglot_small1, on_progress=events.append)
    # when evaluated on 5-way 1-shot episodes of three alphabets of small2 that small1 lacks
    score = evaluate_classifier(
        "protonet",
        result.weights,
        result.model_config,
        omniglot_small2,
        classes=_held_out(omniglot_small2),
        n_way=5,
        k_shot=1,
        query=5,
        episodes=200,
        strict=False,
        seen_class_names=result.train_class_names,
    )
    # then accuracy is far above chance (20%), and the training loss fell
    assert score.mean - score.ci95 > 0.40, score
    assert events[-1]["loss"] < 0.6 * events[0]["loss"]


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "min_gain"), [("maml", 0.08), ("fomaml", 0.01)])
def test_maml_improves_on_its_initialization_for_unseen_alphabets(
    omniglot_small1, omniglot_small2, algorithm, min_gain
):
    # given MAML meta-trained for 40 steps, and the same net at its initialization
    config = {
        "algorithm": algorithm,
        "model": {"hidden": 16},
        "task": {"n_way": 5, "k_shot": 1, "query": 1},
        "steps": 40,
        "meta_batch": 4,
        "outer_lr": 3e-3,
        "device": "cpu",
        "checkpoint_every": 0,
    }
    result = train(config, omniglot_small1)
    torch.manual_seed(0)
    initial = build_model(result.model_config)
    # when both adapt to the same 150 held-out episodes
    kwargs = {"classes": _held_out(omniglot_small2), "n_way": 5, "k_shot": 1, "query": 5, "episodes": 150}
    adapt = result.model_config["adapt"]
    trained = evaluate_classifier(
        algorithm, result.weights, result.model_config, omniglot_small2, strict=False, **kwargs
    )
    before = evaluate_model(algorithm, initial, omniglot_small2, adapt=adapt, strict=False, **kwargs)
    # then the meta-trained initialization is significantly better, episode by episode
    diff = paired_comparison(trained, before)
    assert diff["mean_diff"] > min_gain and diff["p_value"] < 0.01, diff
