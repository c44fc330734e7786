"""Text domains in the engine, on vectors: the arrays and their file, episodes, the four text
algorithms through train / evaluate / predict, and their weights files.

The vectors here are synthetic clusters on the unit sphere (as the sentence encoder's are), so
these tests run in a moment; the real encoder and CLINC150 are in ``test_text_encoder.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from learning.engine import predict
from learning.engine.algorithms import REGISTRY, ConfigError, get_entry, train, validate_config
from learning.engine.checkpoints import InMemoryCheckpointStore
from learning.engine.data import (
    DataFormatError,
    ImageArrays,
    TextArrays,
    load_text_arrays,
    save_image_arrays,
    text_arrays_to_bytes,
)
from learning.engine.episodes import EpisodeError, EpisodeSampler, EpisodeSpec
from learning.engine.experiments import EpisodePlan, evaluate, meta_train_and_evaluate
from learning.engine.weights import weights_to_bytes
from learning.engine.weights_check import check_weights_file

TEXT_ALGORITHMS = ("protonet", "maml", "fomaml", "reptile")
CLASSES, PER_CLASS, DIM = 16, 12, 24
TRAIN, HELD_OUT = list(range(10)), list(range(10, 16))


def clusters(seed: int = 0, spread: float = 0.6) -> TextArrays:
    """16 classes of 12 unit vectors in 24-d around random centres, two groups of 8 classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, 1, DIM))
    x = (centres + spread * rng.normal(size=(CLASSES, PER_CLASS, DIM))).reshape(-1, DIM)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    names = tuple(f"intent_{c:02d}" for c in range(CLASSES))
    groups = tuple("banking" if c < 8 else "travel" for c in range(CLASSES))
    return TextArrays(x, np.repeat(np.arange(CLASSES), PER_CLASS), names, groups, encoder="test-vectors")


def _tiny(algorithm: str, **over) -> dict:
    config = {
        "algorithm": algorithm,
        "domain": "text",
        "model": {"hidden": [16]},
        "task": {"n_way": 4, "k_shot": 1, "query": 3, "meta_train_classes": TRAIN},
        "steps": 6,
        "meta_batch": 2,
        "device": "cpu",
        "checkpoint_every": 0,
        "seed": 5,
    }
    return {**config, **over}


def test_text_arrays_round_trip_through_their_npz_and_refuse_what_does_not_fit():
    # given an embedded text domain
    data = clusters()
    # when written and read back
    back = load_text_arrays(io.BytesIO(text_arrays_to_bytes(data)))
    # then nothing changed
    assert np.array_equal(back.embeddings, data.embeddings) and back.embeddings.dtype == np.float32
    assert np.array_equal(back.labels, data.labels) and back.class_names == data.class_names
    assert back.class_groups == data.class_groups and back.encoder == "test-vectors"
    assert (
        back.dim == DIM and back.groups == ("banking", "travel") and back.class_counts().tolist() == [12] * 16
    )
    # and arrays that break the layout are refused, naming what is wrong
    with pytest.raises(DataFormatError, match="float32"):
        TextArrays(data.embeddings.astype(np.float64), data.labels, data.class_names, data.class_groups)
    with pytest.raises(DataFormatError, match="NaN"):
        TextArrays(np.full((2, 3), np.nan, np.float32), np.array([0, 0]), ("a",), ("",))
    with pytest.raises(DataFormatError, match="outside the class list"):
        TextArrays(np.zeros((2, 3), np.float32), np.array([0, 1]), ("a",), ("",))


def test_a_text_file_that_needs_unpickling_or_lacks_a_field_is_refused():
    # given an npz with an object array, and one without the encoder
    pickled, partial = io.BytesIO(), io.BytesIO()
    data = clusters()
    names, groups = np.array(data.class_names), np.array(data.class_groups)
    np.savez(
        pickled,
        embeddings=data.embeddings,
        labels=data.labels,
        encoder="x",
        class_names=names.astype(object),
        class_groups=groups,
    )
    np.savez(partial, embeddings=data.embeddings, labels=data.labels, class_names=names, class_groups=groups)
    image = io.BytesIO()
    save_image_arrays(
        ImageArrays(np.zeros((2, 28, 28), np.uint8), np.array([0, 1]), ("a", "b"), ("", "")), image
    )
    # when read / then each is refused as not a text-array file
    for blob in (pickled, partial, image):
        blob.seek(0)
        with pytest.raises(DataFormatError, match="not a MetaKB text-array file"):
            load_text_arrays(blob)


def test_the_episode_sampler_draws_embedding_rows_of_text_domains():
    # given a text domain and a 4-way 2-shot 3-query spec over its held-out classes
    data = clusters()
    sampler = EpisodeSampler(data, HELD_OUT, EpisodeSpec(n_way=4, k_shot=2, query=3), seed=3)
    # when an episode and a batch are drawn
    episode = sampler.episode(7)
    batch = sampler.batch(6, 2)
    # then the inputs are the data's rows, class-major, of the drawn classes only
    assert episode.x_support.shape == (8, DIM) and episode.x_query.shape == (12, DIM)
    assert batch.x_support.shape == (2, 8, DIM) and batch.y_query.shape == (2, 12)
    assert torch.equal(batch.x_support[1], episode.x_support)
    assert set(episode.classes.tolist()) <= set(HELD_OUT)
    for label, c in enumerate(episode.classes):
        rows = data.embeddings[data.labels == c]
        for x in episode.x_support[episode.y_support == label]:
            assert (np.abs(rows - x.numpy()).max(1) == 0).any()
    # and within-group episodes keep to one group; rotations do not exist for text
    grouped = EpisodeSampler(data, range(16), EpisodeSpec(4, 1, 1, within_group=True), seed=0)
    assert len({data.class_groups[c] for c in grouped.episode(0).classes}) == 1
    with pytest.raises(EpisodeError) as refused:
        EpisodeSampler(data, HELD_OUT, EpisodeSpec(2, 1, 1, rotations=True), seed=0)
    assert refused.value.field == "rotations"


@pytest.mark.parametrize("algorithm", TEXT_ALGORITHMS)
def test_each_text_algorithm_has_a_text_variant_with_its_own_defaults(algorithm):
    # when the smallest text config is validated
    full = validate_config({"algorithm": algorithm, "domain": "text"})
    # then it is the text variant: an MLP over embeddings, no image settings
    assert (
        full["domain"] == "text"
        and full["model"]["arch"] == "text_mlp"
        and full["model"]["hidden"] in ([256], [512])
    )
    assert "rotations" not in full and full["task"]["query"] == 15
    entry = get_entry(algorithm, data=clusters())
    assert entry.domain == "text" and entry.model["arch"] == "text_mlp" and entry.classify is not None
    assert entry.offered and (algorithm, "image") in REGISTRY
    # and an image setting is refused by name
    with pytest.raises(ConfigError) as refused:
        validate_config({"algorithm": algorithm, "domain": "text", "rotations": True})
    assert refused.value.field == "rotations"


def test_text_algorithms_refuse_image_data_and_image_algorithms_refuse_text_data():
    images = ImageArrays(np.zeros((4, 28, 28), np.uint8), np.array([0, 0, 1, 1]), ("a", "b"), ("", ""))
    with pytest.raises(ConfigError, match="needs TextArrays data"):
        train(_tiny("protonet"), images)
    with pytest.raises(ConfigError, match="needs ImageArrays data"):
        train({**_tiny("protonet"), "domain": "image", "model": {"hidden": 8}}, clusters())


@pytest.mark.parametrize("algorithm", TEXT_ALGORITHMS)
def test_each_text_algorithm_trains_saves_evaluates_and_predicts(algorithm):
    # given clustered vectors
    data = clusters()
    # when trained for a few steps, meta-training classes 0..9
    result = train(_tiny(algorithm), data)
    # then its model is the text MLP and its weights file passes the upload checks
    config = result.model_config
    assert config["arch"] == "text_mlp" and config["in_features"] == DIM and config["hidden"] == [16]
    assert (config["head"] == "linear") == (algorithm != "protonet")
    blob = weights_to_bytes(result.weights, config, algorithm)
    assert check_weights_file(blob, algorithm=algorithm, architecture="text_mlp")["arch"] == "text_mlp"
    # and the protocol scores it on held-out classes only
    plan = EpisodePlan(n_way=4, k_shot=1, query=3, classes=HELD_OUT, episodes=20, strict=False)
    [score] = evaluate(
        algorithm, result.weights, config, data, plan, seen_class_names=result.train_class_names
    )
    assert score.metric == "accuracy" and score.episodes == 20 and 0.0 <= score.mean <= 1.0
    seen_plan = EpisodePlan(n_way=4, k_shot=1, query=3, classes=TRAIN, episodes=20, strict=False)
    with pytest.raises(ValueError, match="seen in meta-training"):
        evaluate(
            algorithm, result.weights, config, data, seen_plan, seen_class_names=result.train_class_names
        )
    # and a user's support and query embeddings get one probability row per query
    predictor = predict.load_predictor(result.weights, config, algorithm)
    support = np.stack([data.embeddings[data.labels == c][0] for c in HELD_OUT[:4]])
    query = np.stack([data.embeddings[data.labels == c][5] for c in HELD_OUT[:4]])
    probabilities = predict.classify(predictor, support, [0, 1, 2, 3], query)
    assert probabilities.shape == (4, 4) and np.allclose(probabilities.sum(1), 1.0)
    assert predictor.domain == "text" and predictor.fixed_ways == (None if algorithm == "protonet" else 4)


def test_protonet_on_text_beats_chance_on_held_out_classes_by_far():
    # given clustered vectors, ProtoNet meta-trained on classes 0..9
    config = _tiny("protonet", steps=30, meta_batch=1, outer_lr=3e-3)
    plan = EpisodePlan(n_way=4, k_shot=1, query=5, classes=HELD_OUT, episodes=100, strict=False)
    # when meta-trained and evaluated in one call
    report = meta_train_and_evaluate(config, clusters(), plan)
    # then held-out 4-way 1-shot accuracy is far above the 25 % of chance
    [score] = report.scores
    assert score.mean > 0.7, score


def test_a_stopped_text_run_resumes_to_the_same_weights():
    # given a ProtoNet text run stopped after its second step
    store = InMemoryCheckpointStore()
    calls = iter(range(100))
    stopped = train(_tiny("protonet"), clusters(), should_stop=lambda: next(calls) >= 2, checkpoint=store)
    # when resumed from its checkpoint, and when run in one go
    resumed = train(_tiny("protonet"), clusters(), checkpoint=store)
    whole = train(_tiny("protonet"), clusters())
    # then both end with bitwise the same weights
    assert stopped.stopped and not resumed.stopped
    assert all(torch.equal(resumed.weights[k], whole.weights[k]) for k in whole.weights)


def test_text_predictions_refuse_embeddings_of_another_size_and_wrong_way_counts():
    data = clusters()
    maml = train(_tiny("maml"), data)
    predictor = predict.load_predictor(maml.weights, maml.model_config, "maml")
    support = data.embeddings[:4]
    with pytest.raises(predict.PredictError, match=r"embeddings must be \(n, 24\)"):
        predict.classify(predictor, support[:, :10], [0, 1, 2, 3], support[:, :10])
    with pytest.raises(predict.PredictError, match="trained 4-way") as refused:
        predict.classify(predictor, support[:3], [0, 1, 2], support)
    assert refused.value.field == "support_labels"
    with pytest.raises(predict.PredictError, match="cannot classify texts"):
        predict.load_predictor(maml.weights, maml.model_config, "siamese")
