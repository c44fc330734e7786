"""Transfer methods on text domains: a text source's MLP body transferred onto a target of sentence
embeddings, evaluated by the shared protocol, resumed exactly, and better than scratch where it must be.

The vectors are synthetic: each domain's class centres lie in one SIGNAL-dimensional subspace of
the DIM-dimensional embedding space, and every example adds isotropic noise in all DIM
dimensions (then is put on the unit sphere, as the sentence encoder's vectors are). A source
meta-trained on RELATED classes (other centres in the same subspace) has learned to look at that
subspace; a net trained from scratch on two examples per target class has not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from learning.engine.algorithms import REGISTRY, ConfigError, train, validate_config
from learning.engine.algorithms import text as text_algorithms
from learning.engine.algorithms.transfer import (
    TRANSFER_ALGORITHMS,
    TextTransferNet,
    TransferData,
    classify_transfer,
)
from learning.engine.checkpoints import InMemoryCheckpointStore
from learning.engine.data import EpisodeData, ImageArrays, TextArrays
from learning.engine.experiments import EpisodePlan, Score, evaluate, transfer_and_compare
from learning.engine.loop import TrainResult
from learning.engine.nets import build_model
from learning.engine.transferability import features_of, leep, logme, nce, outputs_of
from learning.engine.weights import load_model, weights_to_bytes
from learning.engine.weights_check import check_weights_file

DIM, SIGNAL = 24, 4
TARGET_TRAIN, TARGET_NEW = list(range(8)), list(range(8, 16))
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("scratch", {}),
    ("finetune", {"l2sp": 0.5, "l2sp_beta": 0.1}),
    ("feature", {"head": "logistic"}),
    ("instance", {"weighting": "kmm", "source_classes": [0, 1, 2, 3], "source_batch": 4}),
    ("rkd", {"student": {"hidden": 8}}),
]


def _basis(seed: int, dim: int = DIM) -> np.ndarray:
    """An orthonormal ``(dim, SIGNAL)`` basis of a random subspace."""
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))[0][:, :SIGNAL]


def domain(
    seed: int, classes: int, per_class: int, prefix: str, basis: np.ndarray, noise: float = 0.6
) -> TextArrays:
    """``classes`` classes of ``per_class`` unit vectors: centres in ``basis``'s span plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 1, SIGNAL)) @ basis.T
    x = (centres + noise * rng.normal(size=(classes, per_class, basis.shape[0]))).reshape(
        classes * per_class, -1
    )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    names = tuple(f"{prefix}{c:02d}" for c in range(classes))
    return TextArrays(
        x, np.repeat(np.arange(classes), per_class), names, ("",) * classes, encoder="test-vectors"
    )


SOURCE = domain(0, 16, 8, "source_intent_", _basis(99))
TARGET = domain(1, 16, 8, "target_intent_", _basis(99))


def _text_source(algorithm: str, data: TextArrays, hidden: list[int], steps: int) -> TrainResult:
    config = {
        "algorithm": algorithm,
        "domain": "text",
        "model": {"hidden": hidden},
        "task": {"n_way": 5, "k_shot": 1, "query": 5},
        "steps": steps,
        "meta_batch": 4,
        "device": "cpu",
        "checkpoint_every": 0,
    }
    return train(config, data)


@pytest.fixture(scope="module")
def sources() -> dict[str, TrainResult]:
    """Tiny text sources: a ProtoNet (no ReLU after its last layer) and a MAML net (one after it)."""
    return {
        "protonet": _text_source("protonet", SOURCE, [16, 12], 5),
        "maml": _text_source("maml", SOURCE, [16], 3),
    }


def _data(
    source: TrainResult, target: EpisodeData = TARGET, source_data: EpisodeData | None = None
) -> TransferData:
    return TransferData(
        target, source.weights, source.model_config, source.algorithm, source_data, source.train_class_names
    )


def _tiny(algorithm: str, **extra: Any) -> dict[str, Any]:
    config = {
        "algorithm": algorithm,
        "target": {"train_classes": TARGET_TRAIN, "examples_per_class": 3},
        "steps": 4,
        "batch_size": 8,
        "device": "cpu",
        "checkpoint_every": 0,
        "seed": 3,
    }
    return {**config, **extra}


# ------------------------------------------------------------------------------ registry, config


def test_every_method_is_registered_for_text_behind_the_text_switch():
    for name in TRANSFER_ALGORITHMS:
        entry = REGISTRY[(name, "text")]
        assert entry.classify is classify_transfer and entry.data_type is TransferData
        assert entry.model == {"arch": "text_transfer"}
        assert entry.kind == ("baseline" if name == "scratch" else "transfer")
        assert entry.offered == text_algorithms.OFFERED
        assert REGISTRY[(name, "image")].model == {"arch": "conv4_transfer"}


def test_the_domain_follows_the_target_and_a_mismatch_is_refused(sources):
    data = _data(sources["protonet"])
    # when no domain is given, the text target's kind picks the text variant
    assert validate_config({"algorithm": "finetune"}, data)["domain"] == "text"
    # and a config that says image is refused by its field
    with pytest.raises(ConfigError, match="'text' domain") as refused:
        train({**_tiny("finetune"), "domain": "image"}, data)
    assert refused.value.field == "domain"


# ------------------------------------------------------------------------------ training and evaluation


@pytest.mark.parametrize(("algorithm", "extra"), METHODS)
def test_each_method_trains_from_a_text_source_and_is_evaluated_by_the_protocol(sources, algorithm, extra):
    # given a ProtoNet text source with two hidden layers (and its examples, for instance transfer)
    source = sources["protonet"]
    data = _data(source, source_data=SOURCE if algorithm == "instance" else None)
    plan = EpisodePlan(n_way=4, k_shot=1, query=3, classes=TARGET_NEW, episodes=12, strict=False)
    # when transferred and compared with the scratch baseline at 1 and 2 shots
    report = transfer_and_compare(_tiny(algorithm, **extra), data, plan, [1, 2])
    # then the result is a text transfer net over the target's classes (and the source's, for instance)
    result = report.transferred
    config = result.model_config
    width = [8, 8] if algorithm == "rkd" else [16, 12]
    classes = 8 + (4 if algorithm == "instance" else 0)
    assert config == {
        "arch": "text_transfer",
        "in_features": DIM,
        "hidden": width,
        "final_relu": False,
        "classes": classes,
    }
    assert isinstance(load_model(result.weights, config), TextTransferNet)
    blob = weights_to_bytes(result.weights, config, algorithm)
    assert (
        check_weights_file(blob, algorithm=algorithm, architecture="text_transfer")["arch"] == "text_transfer"
    )
    assert 0.0 <= result.metrics["target_accuracy"] <= 1.0 and result.metrics["target_examples"] == 8 * 5
    # and both models were scored on identical held-out episodes at each shot count
    assert [s.shots for s in report.scores] == [1, 2] and not report.stopped
    for score in report.scores:
        assert score.episodes == 12 and 0.0 <= score.mean <= 1.0 and 0.0 <= score.baseline_mean <= 1.0
    # and the protocol refuses the classes it trained on, the source's among them
    assert set(source.train_class_names) <= set(result.train_class_names)
    seen = EpisodePlan(n_way=4, k_shot=1, query=3, classes=TARGET_TRAIN, episodes=4, strict=False)
    with pytest.raises(ValueError, match="seen in meta-training"):
        evaluate(algorithm, result.weights, config, TARGET, seen, seen_class_names=result.train_class_names)


def test_a_frozen_maml_body_is_transferred_weight_for_weight(sources):
    # given a MAML text source (a ReLU after its last hidden layer, then an n-way head)
    source = sources["maml"]
    # when its features are frozen under a new head
    result = train(_tiny("feature", head="prototypes"), _data(source))
    # then the backbone is the source's body, unchanged, with its last ReLU; its head is gone
    assert result.model_config["final_relu"] is True and result.model_config["hidden"] == [16]
    body = {k.removeprefix("body."): v for k, v in source.weights.items() if k.startswith("body.")}
    backbone = {
        k.removeprefix("backbone."): v for k, v in result.weights.items() if k.startswith("backbone.")
    }
    assert body and body.keys() == backbone.keys()
    assert all(torch.equal(body[k], backbone[k]) for k in body)
    net = load_model(result.weights, result.model_config)
    assert isinstance(net.backbone[-1], torch.nn.ReLU)
    # and a text transfer result is itself a source for the next transfer
    again = train(_tiny("finetune", layers="head"), _data(result))
    assert all(torch.equal(again.weights[f"backbone.{k}"], v) for k, v in backbone.items())


# ------------------------------------------------------------------------------ refused sources


def test_an_image_model_is_refused_as_the_source_of_a_text_target():
    # given an image ProtoNet (a Conv4) as the source of a text target
    conv4 = {"arch": "conv4", "hidden": 4, "head": "none", "out_features": 0}
    data = TransferData(TARGET, build_model(conv4).state_dict(), conv4, "protonet")
    # when any method starts / then the source model is refused by name
    for algorithm in ("finetune", "feature", "rkd"):
        with pytest.raises(ConfigError, match="not a text model") as refused:
            train(_tiny(algorithm), data)
        assert refused.value.field == "source_model"


def test_a_text_source_of_another_size_or_for_an_image_target_is_refused(sources):
    source = sources["protonet"]
    # a target whose embeddings have another size than the source's inputs
    wider = domain(2, 16, 8, "wide_", _basis(5, dim=DIM + 8))
    with pytest.raises(ConfigError, match="24-d embeddings") as refused:
        train(_tiny("finetune"), _data(source, wider))
    assert refused.value.field == "source_model"
    # an image target
    images = ImageArrays(
        np.zeros((32, 28, 28), np.uint8), np.repeat(np.arange(8), 4), tuple("abcdefgh"), ("",) * 8
    )
    image_config = {**_tiny("finetune"), "target": {"train_classes": [0, 1], "examples_per_class": 2}}
    with pytest.raises(ConfigError, match="no Conv4 backbone") as refused:
        train(image_config, _data(source, images))
    assert refused.value.field == "source_model"
    # source examples of another kind than the target's, for instance transfer
    with pytest.raises(ConfigError, match="ImageArrays") as refused:
        train(_tiny("instance"), _data(source, source_data=images))
    assert refused.value.field == "source_data"


# ------------------------------------------------------------------------------ resume


@pytest.mark.parametrize(("algorithm", "extra"), METHODS)
def test_resume_after_a_stop_ends_bitwise_equal_to_an_uninterrupted_run(sources, algorithm, extra):
    # given an uninterrupted run
    config = {**_tiny(algorithm, **extra), "checkpoint_every": 2}
    data = _data(sources["protonet"], source_data=SOURCE if algorithm == "instance" else None)
    full = train(config, data)
    # when another run is stopped before its 3rd step and resumed from its checkpoint
    store = InMemoryCheckpointStore()
    polls = iter(range(100))
    stopped = train(config, data, should_stop=lambda: next(polls) >= 2, checkpoint=store)
    resumed = train(config, data, checkpoint=store)
    # then the final weights are bitwise equal, and the run really changed them on the way
    assert stopped.stopped and stopped.steps_done == 2 and store.saves == [2, 4]
    assert resumed.steps_done == 4 and not resumed.stopped
    for name, value in full.weights.items():
        assert torch.equal(value, resumed.weights[name]), name
    assert any(not torch.equal(full.weights[k], stopped.weights[k]) for k in full.weights)


# ------------------------------------------------------------------------------ transferability


def test_transferability_scores_take_a_text_model_and_embeddings(sources):
    # given text sources with and without a classifier head, and the target's embeddings
    x, y = TARGET.embeddings, TARGET.labels
    protonet = load_model(sources["protonet"].weights, sources["protonet"].model_config)
    maml = load_model(sources["maml"].weights, sources["maml"].model_config)
    # when their features and logits are read
    features = features_of(protonet, x, batch_size=50)
    logits = outputs_of(maml, x)
    # then they have one row per text, and every score is a finite number
    assert features.shape == (len(x), 12) and features.dtype == np.float64
    assert features_of(maml, x).shape == (len(x), 16) and logits.shape == (len(x), 5)
    assert np.allclose(features, protonet.embed(torch.from_numpy(x)).double().detach().numpy(), atol=1e-6)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    scores = [logme(features, y), leep(probs, y), nce(probs.argmax(1), y)]
    assert all(np.isfinite(s) for s in scores)


# ------------------------------------------------------------------------------ positive transfer

MEASURED_EPISODES = 600
GAINS: list[tuple[str, dict[str, Any], float]] = [
    ("finetune", {}, 0.06),
    ("feature", {"head": "prototypes"}, 0.06),
    ("rkd", {}, 0.02),
    ("instance", {"steps": 300}, 0.015),
]


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    """A larger related pair: a ProtoNet on 40 source intents, a target of 40 intents (20 to train on,
    two texts each; 20 new ones to evaluate on), and a source on an unrelated subspace."""
    basis = _basis(7, dim=32)
    source = domain(10, 40, 20, "source_", basis)
    target = domain(11, 40, 10, "target_", basis)
    unrelated = domain(12, 40, 20, "other_", _basis(8, dim=32))
    return {
        "source": source,
        "target": target,
        "related": _text_source("protonet", source, [32], 300),
        "unrelated": _text_source("protonet", unrelated, [32], 300),
    }


def _measured_gain(measured: dict[str, Any], source: str, algorithm: str, extra: dict[str, Any]) -> Score:
    """The 5-way 1-shot score of ``algorithm`` from ``source`` beside scratch, on 600 new-intent episodes."""
    data = _data(
        measured[source], measured["target"], measured["source"] if algorithm == "instance" else None
    )
    config = {
        "algorithm": algorithm,
        "target": {"train_classes": list(range(20)), "examples_per_class": 2},
        "steps": 100,
        "batch_size": 20,
        "device": "cpu",
        "checkpoint_every": 0,
        **extra,
    }
    plan = EpisodePlan(n_way=5, k_shot=1, query=5, classes=list(range(20, 40)), episodes=MEASURED_EPISODES)
    [score] = transfer_and_compare(config, data, plan, [1]).scores
    return score


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "extra", "min_gain"), GAINS)
def test_transfer_from_a_source_on_related_classes_beats_scratch(measured, algorithm, extra, min_gain):
    # when transferred from the related source (and, for instance transfer, with its examples) and
    # compared with scratch on the same 600 episodes of new target intents
    score = _measured_gain(measured, "related", algorithm, extra)
    # then the gain is above the margin, and beyond the paired interval
    gain = score.mean - score.baseline_mean
    assert gain > min_gain and gain > score.gain_ci95, score


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "extra"), [("finetune", {}), ("feature", {"head": "prototypes"})])
def test_transfer_from_a_source_on_unrelated_classes_loses_to_scratch(measured, algorithm, extra):
    # when transferred from the source whose classes lie in another subspace
    score = _measured_gain(measured, "unrelated", algorithm, extra)
    # then it is worse than scratch, beyond the paired interval
    assert score.baseline_mean - score.mean > score.gain_ci95, score


@pytest.mark.slow
def test_logme_ranks_the_related_text_source_above_the_unrelated_one(measured):
    # given both sources' features of the target's texts
    target = measured["target"]
    scores = {}
    for name in ("related", "unrelated"):
        source = measured[name]
        net = load_model(source.weights, source.model_config)
        scores[name] = logme(features_of(net, target.embeddings), target.labels)
    # then LogME prefers the source trained on the same subspace
    assert scores["related"] > scores["unrelated"], scores
