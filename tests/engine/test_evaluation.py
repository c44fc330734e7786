"""The evaluation protocol: held-out classes, >= 600 episodes, 95% CI, paired comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learning.engine.evaluation import (
    MIN_PROTOCOL_EPISODES,
    EvalResult,
    EvaluationStopped,
    evaluate_classifier,
    evaluate_model,
    mean_ci95,
    paired_comparison,
)
from learning.engine.nets import build_model
from learning.engine.progress import ProgressMeter

CONV = {"arch": "conv4", "in_channels": 1, "image_size": 28, "hidden": 8, "layers": 4}


def _proto_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model({**CONV, "head": "none"})


def _greek(data) -> list[int]:
    return [c for c in range(data.num_classes) if data.class_groups[c] == "Greek"]


def test_ci95_is_1_96_standard_errors():
    values = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    mean, ci = mean_ci95(values)
    assert mean == pytest.approx(0.6)
    assert ci == pytest.approx(1.959964 * np.std(values, ddof=1) / math.sqrt(5), rel=1e-6)


def test_same_spec_and_seed_give_identical_episodes_and_results(omniglot_small1):
    # given one model evaluated twice with the same spec and seed, once with another seed
    model = _proto_model()
    kwargs = {
        "classes": _greek(omniglot_small1),
        "n_way": 5,
        "k_shot": 1,
        "query": 3,
        "episodes": 20,
        "strict": False,
    }
    a = evaluate_model("protonet", model, omniglot_small1, seed=1, **kwargs)
    b = evaluate_model("protonet", model, omniglot_small1, seed=1, batch_episodes=3, **kwargs)
    c = evaluate_model("protonet", model, omniglot_small1, seed=2, **kwargs)
    # then
    assert np.array_equal(a.per_episode, b.per_episode) and a.episode_key == b.episode_key
    assert a.episode_key != c.episode_key
    assert a.per_episode.shape == (20,) and 0 <= a.mean <= 1 and a.ci95 > 0
    assert a.mean == pytest.approx(a.per_episode.mean())


def test_the_protocol_minimum_and_held_out_classes_are_enforced(omniglot_small1):
    model = _proto_model()
    classes = _greek(omniglot_small1)
    with pytest.raises(ValueError, match=f">= {MIN_PROTOCOL_EPISODES} episodes, got 599"):
        evaluate_model("protonet", model, omniglot_small1, classes=classes, n_way=5, k_shot=1, episodes=599)
    seen = [omniglot_small1.class_names[classes[3]]]
    with pytest.raises(ValueError, match="1 evaluation classes were seen in meta-training"):
        evaluate_model(
            "protonet", model, omniglot_small1, classes=classes, n_way=5, k_shot=1, seen_class_names=seen
        )


def test_a_maml_head_must_match_the_episode_ways(omniglot_small1):
    torch.manual_seed(0)
    model = build_model({**CONV, "head": "linear", "out_features": 5})
    with pytest.raises(ValueError, match="head has 5 outputs but the episodes are 3-way"):
        evaluate_model(
            "maml",
            model,
            omniglot_small1,
            classes=_greek(omniglot_small1),
            n_way=3,
            k_shot=1,
            episodes=5,
            strict=False,
            adapt={"inner_lr": 0.4, "inner_steps": 1},
        )


def test_paired_comparison_needs_the_same_episodes_and_measures_the_difference(omniglot_small1):
    # given two different models on identical episodes, and a third evaluation on other episodes
    classes = _greek(omniglot_small1)
    kwargs = {
        "classes": classes,
        "n_way": 5,
        "k_shot": 1,
        "query": 3,
        "episodes": 30,
        "strict": False,
        "seed": 0,
    }
    a = evaluate_model("protonet", _proto_model(0), omniglot_small1, **kwargs)
    b = evaluate_model("protonet", _proto_model(1), omniglot_small1, **kwargs)
    other = evaluate_model("protonet", _proto_model(0), omniglot_small1, **{**kwargs, "seed": 9})
    # when
    diff = paired_comparison(a, b)
    same = paired_comparison(a, a)
    # then
    assert diff["mean_diff"] == pytest.approx(a.mean - b.mean)
    assert 0 <= diff["p_value"] <= 1 and diff["ci95"] > 0 and diff["episodes"] == 30
    assert same == {"mean_diff": 0.0, "ci95": 0.0, "p_value": 1.0, "episodes": 30.0}
    with pytest.raises(ValueError, match="identical episodes"):
        paired_comparison(a, other)


def test_a_clear_difference_gets_a_small_p_value():
    key = "k"
    better = EvalResult(0.9, 0.0, 50, np.full(50, 0.9) + np.linspace(-0.05, 0.05, 50), key)
    worse = EvalResult(0.5, 0.0, 50, np.full(50, 0.5) + np.linspace(0.05, -0.05, 50), key)
    assert paired_comparison(better, worse)["p_value"] < 1e-10


@pytest.mark.parametrize("algorithm", ["maml", "reptile", "protonet", "siamese"])
def test_every_algorithm_classifies_from_saved_weights_like_the_live_model(omniglot_small1, algorithm):
    # given a freshly built net of the algorithm's kind
    head = {"maml": "linear", "reptile": "linear", "protonet": "none", "siamese": "siamese"}[algorithm]
    config = {**CONV, "head": head, "out_features": 5 if head == "linear" else 0}
    config["adapt"] = {"inner_lr": 0.4, "inner_steps": 2}
    torch.manual_seed(0)
    model = build_model(config)
    kwargs = {
        "classes": _greek(omniglot_small1),
        "n_way": 5,
        "k_shot": 2,
        "query": 2,
        "episodes": 6,
        "strict": False,
    }
    # when evaluated live and from its state dict
    live = evaluate_model(algorithm, model, omniglot_small1, adapt=config["adapt"], **kwargs)
    saved = evaluate_classifier(algorithm, model.state_dict(), config, omniglot_small1, **kwargs)
    # then identical per-episode accuracies
    assert np.array_equal(live.per_episode, saved.per_episode)


def _progress_kwargs(data) -> dict:
    return {
        "classes": _greek(data),
        "n_way": 5,
        "k_shot": 1,
        "query": 3,
        "episodes": 20,
        "strict": False,
        "seed": 3,
        "batch_episodes": 4,
    }


def test_the_progress_meter_reports_the_measured_rate_and_eta_and_throttles():
    # given a meter on a fake clock that starts at t = 100 s
    now = [100.0]
    events: list[dict] = []
    meter = ProgressMeter(30, events.append, interval_s=0.5, clock=lambda: now[0])
    # when 10 episodes finish at t = 102, 5 more at t = 102.2, and the last 15 at t = 102.3
    now[0] = 102.0
    first = meter.advance(10)
    now[0] = 102.2
    throttled = meter.advance(5)
    now[0] = 102.3
    final = meter.advance(15)
    # then 10 episodes in 2 s is 5 per second, so 20 left take 4 s; the second advance is within 0.5 s
    assert first == {"done": 10, "total": 30, "eta_seconds": 4.0, "episodes_per_sec": 5.0}
    assert throttled is None
    assert final is not None and final["done"] == 30 and final["eta_seconds"] == 0.0
    assert final["episodes_per_sec"] == pytest.approx(30 / 2.3)
    assert events == [first, final]


def test_evaluation_progress_counts_episodes_up_to_the_total_with_an_eta(omniglot_small1):
    # given a 20-episode evaluation in batches of 4 with no throttling
    events: list[dict] = []
    # when
    evaluate_model(
        "protonet",
        _proto_model(),
        omniglot_small1,
        on_progress=events.append,
        progress_interval_s=0,
        **_progress_kwargs(omniglot_small1),
    )
    # then one event per batch, done increasing to the total, each with a float ETA and a rate
    assert [e["done"] for e in events] == [4, 8, 12, 16, 20]
    assert all(e["total"] == 20 for e in events)
    assert all(isinstance(e["eta_seconds"], float) and e["eta_seconds"] >= 0 for e in events)
    assert all(e["episodes_per_sec"] > 0 for e in events)
    assert events[-1]["eta_seconds"] == 0.0
    assert set(events[0]) == {"done", "total", "eta_seconds", "episodes_per_sec"}


def test_progress_and_stop_callbacks_do_not_change_the_results(omniglot_small1):
    # given the same evaluation without callbacks and with both
    model = _proto_model()
    kwargs = _progress_kwargs(omniglot_small1)
    plain = evaluate_model("protonet", model, omniglot_small1, **kwargs)
    # when
    watched = evaluate_model(
        "protonet",
        model,
        omniglot_small1,
        on_progress=lambda event: None,
        should_stop=lambda: False,
        progress_interval_s=0,
        **kwargs,
    )
    # then bitwise the same accuracies on the same episodes
    assert np.array_equal(plain.per_episode, watched.per_episode)
    assert plain.episode_key == watched.episode_key and plain.mean == watched.mean


def test_a_long_progress_interval_leaves_only_the_first_and_final_events(omniglot_small1):
    # given a saved protonet evaluated through evaluate_classifier on 40 episodes (batches of 16, 16 and 8)
    # with a one-hour interval
    config = {**CONV, "head": "none"}
    kwargs = {**_progress_kwargs(omniglot_small1), "episodes": 40}
    del kwargs["batch_episodes"]
    events: list[dict] = []
    # when
    evaluate_classifier(
        "protonet",
        _proto_model().state_dict(),
        config,
        omniglot_small1,
        on_progress=events.append,
        progress_interval_s=3600,
        **kwargs,
    )
    # then the middle batch is not reported
    assert [e["done"] for e in events] == [16, 40]


def test_should_stop_ends_the_evaluation_between_batches(omniglot_small1):
    # given a stop flag that turns True on its third poll (after two batches of 4 episodes)
    polls: list[int] = []
    events: list[dict] = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    # when / then
    with pytest.raises(EvaluationStopped, match="after 8 of 20 episodes") as stopped:
        evaluate_model(
            "protonet",
            _proto_model(),
            omniglot_small1,
            on_progress=events.append,
            should_stop=stop,
            progress_interval_s=0,
            **_progress_kwargs(omniglot_small1),
        )
    assert (stopped.value.done, stopped.value.total) == (8, 20)
    assert [e["done"] for e in events] == [4, 8]
