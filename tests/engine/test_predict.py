"""Predictions on a user's own task: shapes, probabilities, adaptation, and above-chance accuracy.

``tiny_model`` trains real (tiny) models once per session; the API and page tests reuse it.
"""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest
import torch

from learning.builtin_domains import digits_arrays
from learning.engine import predict
from learning.engine.algorithms import train
from learning.engine.data import ImageArrays
from learning.engine.functions import FunctionFamily
from learning.engine.loop import TrainResult

torch.set_num_threads(1)

TRAIN_CLASSES = [0, 1, 2, 3, 4]
"""Digits meta-train classes; 5..9 stay held out."""

_IMAGE = {
    "protonet": {"steps": 20},
    "maml": {"steps": 5, "inner_steps": 1},
    "reptile": {"steps": 3, "meta_batch": 2},
    "siamese": {"steps": 5, "meta_batch": 8},
    "statistician": {"steps": 5},
}
_FUNCTION = {
    "cnp": ("gp-1d", {"steps": 30, "model": {"hidden": 16}, "validation": {"tasks": 0}}),
    "np": ("gp-1d", {"steps": 30, "model": {"hidden": 16, "latent_dim": 8}, "validation": {"tasks": 0}}),
    "maml": (
        "sinusoid",
        {"steps": 5, "meta_batch": 4, "model": {"hidden": [16, 16]}, "validation": {"tasks": 0}},
    ),
}


@functools.cache
def digits() -> ImageArrays:
    return digits_arrays()


@functools.cache
def tiny_model(algorithm: str, domain: str = "image", *, steps: int = 0, hidden: int = 8) -> TrainResult:
    """A real model trained for a few steps on digits (5-way, ``hidden`` filters) or a function family."""
    common = {"algorithm": algorithm, "device": "cpu", "checkpoint_every": 0}
    if domain == "image":
        config = {
            **common,
            "meta_batch": 1,
            "model": {"hidden": hidden},
            "task": {"n_way": 5, "k_shot": 1, "query": 5, "meta_train_classes": TRAIN_CLASSES},
            **_IMAGE[algorithm],
        }
        return train({**config, "steps": steps or config["steps"]}, digits())
    family, settings = _FUNCTION[algorithm]
    return train({**common, "domain": "function", **settings}, FunctionFamily.from_spec(family))


def predictor(algorithm: str, domain: str = "image", **kwargs) -> predict.Predictor:
    result = tiny_model(algorithm, domain, **kwargs)
    return predict.load_predictor(result.weights, result.model_config, result.algorithm)


def held_out_task(rng: np.random.Generator, *, shots: int = 1, queries: int = 10):
    """One support image per held-out class (5..9) and ``queries`` other images of each."""
    data = digits()
    support, query, truth = [], [], []
    for label, cls in enumerate(range(5, 10)):
        idx = rng.permutation(np.flatnonzero(data.labels == cls))
        support += list(data.images[idx[:shots]])
        query += list(data.images[idx[shots : shots + queries]])
        truth += [label] * queries
    labels = np.repeat(np.arange(5), shots)
    return np.stack(support), labels, np.stack(query), np.array(truth)


@pytest.mark.parametrize("algorithm", ["protonet", "maml", "reptile", "siamese"])
def test_classification_gives_one_distribution_per_query(algorithm):
    # given a tiny trained model and a 5-way 1-shot task of held-out digits
    support, labels, query, _ = held_out_task(np.random.default_rng(1), queries=3)

    # when it predicts
    probabilities = predict.classify(predictor(algorithm), support, labels, query)

    # then each of the 15 queries has 5 probabilities that sum to 1
    assert probabilities.shape == (15, 5)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-9)


def test_a_briefly_trained_protonet_beats_chance_on_held_out_digits():
    # given a ProtoNet trained for 50 steps on digits 0-4 only
    net = predictor("protonet", steps=50, hidden=16)
    rng = np.random.default_rng(0)

    # when it labels held-out digits 5-9 from one support image per class, over 10 tasks
    accuracies = []
    for _ in range(10):
        support, labels, query, truth = held_out_task(rng)
        accuracies.append(float((predict.classify(net, support, labels, query).argmax(1) == truth).mean()))

    # then it is right well above the 20% of chance
    assert np.mean(accuracies) > 0.3, accuracies


def test_maml_adapts_a_copy_and_needs_its_training_n_way():
    # given a 5-way MAML model
    net = predictor("maml")
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    support, labels, query, _ = held_out_task(np.random.default_rng(2), queries=2)

    # when it predicts a 5-way task, its own weights stay as trained
    predict.classify(net, support, labels, query)
    assert all(torch.equal(before[k], v) for k, v in net.model.state_dict().items())

    # and a 3-way support set is refused by name
    assert net.fixed_ways == 5
    three = labels < 3
    with pytest.raises(predict.PredictError, match="trained 5-way"):
        predict.classify(net, support[three], labels[three], query)


def test_labels_must_cover_at_least_two_classes():
    net = predictor("protonet")
    support, _, query, _ = held_out_task(np.random.default_rng(3), queries=1)
    with pytest.raises(predict.PredictError, match="N >= 2"):
        predict.classify(net, support, np.zeros(len(support), dtype=int), query)


def test_a_cnp_predicts_a_mean_and_a_positive_std_per_query():
    # given a tiny CNP on gp-1d and three context points
    net = predictor("cnp", "function")
    x_query = np.linspace(-2, 2, 9)

    # when it predicts nine points
    mean, std = predict.regress(net, [-1.0, 0.0, 1.0], [0.3, -0.2, 0.5], x_query)

    # then there is a mean and a positive std for each
    assert mean.shape == (9,) and std is not None and std.shape == (9,)
    assert (std > 0).all() and np.isfinite(mean).all()
    assert net.has_std


def test_a_latent_np_gives_the_same_mixture_moments_for_the_same_request():
    net = predictor("np", "function")
    first = predict.regress(net, [0.0, 0.5], [0.1, 0.2], [0.0, 1.0, 2.0])
    second = predict.regress(net, [0.0, 0.5], [0.1, 0.2], [0.0, 1.0, 2.0])
    assert first[1] is not None and (first[1] > 0).all()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_maml_on_functions_fine_tunes_on_the_support_and_gives_no_std():
    # given a tiny MAML regressor (10 inner steps saved with it)
    net = predictor("maml", "function")
    assert net.adapt["inner_steps"] == 10

    # when it predicts with and without a support set that pulls it towards y = 3
    xs = np.linspace(-4, 4, 10)
    mean, std = predict.regress(net, xs, np.full(10, 3.0), xs)
    with torch.no_grad():
        unadapted = net.model(torch.tensor(xs, dtype=torch.float32).view(-1, 1)).view(-1).double().numpy()

    # then the adapted predictions moved towards the support values, and there is no std
    assert std is None and mean.shape == (10,)
    assert np.abs(mean - 3.0).mean() < np.abs(unadapted - 3.0).mean()


def test_a_model_of_an_unknown_architecture_is_refused():
    with pytest.raises(predict.PredictError, match="architecture"):
        predict.task_of({"arch": "transformer"})


# --- Stopping --------------------------------------------------------------------------------


def with_inner_steps(net: predict.Predictor, steps: int) -> predict.Predictor:
    """``net`` with an absurd saved adaptation, as a stored config may ask for."""
    adapt = {**net.model_config["adapt"], "inner_steps": steps}
    return predict.Predictor(net.algorithm, {**net.model_config, "adapt": adapt}, net.model, net.task)


def test_should_stop_is_polled_between_inner_steps_and_ends_the_prediction():
    # given a MAML model whose saved config asks for a billion inner steps
    net = with_inner_steps(predictor("maml"), 10**9)
    support, labels, query, _ = held_out_task(np.random.default_rng(4), queries=1)
    polls = []

    def stop_at_the_fourth_poll() -> bool:
        polls.append(1)
        return len(polls) >= 4

    # when it predicts with a should_stop that fires at its fourth poll
    with pytest.raises(predict.PredictStopped, match="stopped after 2 of 1000000000 inner steps"):
        predict.classify(net, support, labels, query, should_stop=stop_at_the_fourth_poll)

    # then it stopped right there: once before starting, then before each inner step
    assert len(polls) == 4


def test_a_prediction_past_its_deadline_stops_and_its_thread_ends():
    # given a MAML regressor with a billion inner steps, and a deadline 0.3 s away
    net = with_inner_steps(predictor("maml", "function"), 10**9)
    deadline = time.monotonic() + 0.3
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            predict.regress(
                net, [0.0, 1.0], [0.5, -0.2], [0.5], should_stop=lambda: time.monotonic() > deadline
            )
        except BaseException as exc:  # the test inspects whatever ended it
            outcome.append(exc)

    # when it runs in a thread of its own
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)

    # then the thread has ended, stopped by the deadline rather than finishing a billion steps
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], predict.PredictStopped), outcome


def test_a_stop_before_the_start_runs_nothing():
    net = predictor("protonet")
    support, labels, query, _ = held_out_task(np.random.default_rng(5), queries=1)
    with pytest.raises(predict.PredictStopped, match="before it started"):
        predict.classify(net, support, labels, query, should_stop=lambda: True)
    with pytest.raises(predict.PredictStopped):
        predict.regress(predictor("cnp", "function"), [0.0], [1.0], [0.5], should_stop=lambda: True)


def test_a_statistician_draws_images_of_the_class_its_support_shows_and_nothing_else_does():
    # given a trained Neural Statistician and three images of one held-out digit
    model = predictor("statistician")
    data = digits()
    support = data.images[np.flatnonzero(data.labels == 7)[:3]]

    # when it draws 4 samples, twice with one seed and once with another
    first = predict.sample(model, support, 4, seed=3)
    again = predict.sample(model, support, 4, seed=3)
    other = predict.sample(model, support, 4, seed=4)

    # then they are images as the catalog stores them, and the seed alone decides them
    assert first.shape == (4, 28, 28) and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # and the support decides the summary they are drawn from
    assert not np.array_equal(
        first, predict.sample(model, data.images[np.flatnonzero(data.labels == 8)[:3]], 4, 3)
    )
    assert predict.can_sample(model.model_config)
    # a model that is not generative is refused by name
    protonet = predictor("protonet")
    assert not predict.can_sample(protonet.model_config)
    with pytest.raises(predict.PredictError, match="only Neural Statistician models draw samples"):
        predict.sample(protonet, support, 4)
    with pytest.raises(predict.PredictError, match="at least one support image"):
        predict.sample(model, support[:0], 4)
