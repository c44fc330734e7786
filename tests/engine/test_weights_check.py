"""Weights files are untrusted: their config is checked by its declaration, and a file must be
the model it claims to be, before a net is built from it."""

from __future__ import annotations

import pytest
import torch

from learning.engine import weights as weights_module
from learning.engine.algorithms import REGISTRY
from learning.engine.checkpoints import pack_blob
from learning.engine.config import ConfigError
from learning.engine.model_configs import parse_model_config
from learning.engine.nets import build_model
from learning.engine.weights import WEIGHTS_FORMAT, load_model, weights_from_bytes, weights_to_bytes
from learning.engine.weights_check import check_weights_file
from tests.weights import MODEL_CONFIGS, architecture, model_weights


def _file(model_config: dict, algorithm: str, tensors: dict | None = None) -> bytes:
    meta = {"model_config": model_config, "algorithm": algorithm}
    return pack_blob(tensors or {"w": torch.zeros(1)}, meta, fmt=WEIGHTS_FORMAT)


@pytest.mark.parametrize("algorithm", sorted(MODEL_CONFIGS))
def test_a_file_the_engine_writes_passes_and_loads(algorithm):
    blob = model_weights(algorithm)
    config = check_weights_file(blob, algorithm=algorithm, architecture=architecture(algorithm))
    weights, saved, _ = weights_from_bytes(blob)
    assert parse_model_config(saved) == config
    net = load_model(weights, saved)
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert set(net.state_dict()) == set(weights)


def test_every_built_in_algorithm_declares_the_models_it_saves():
    built_in = [e for e in REGISTRY.values() if e.train.__module__.startswith("learning.engine")]
    assert built_in
    assert [e.name for e in built_in if "arch" not in e.model] == []


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        (
            {"arch": "mlp", "hidden": [16000, 16000]},
            "model_config.hidden",
            "entries must be >= 1 and <= 1024",
        ),
        ({"arch": "mlp", "hidden": [8] * 9}, "model_config.hidden", "has 9 entries; at most 8 are allowed"),
        (
            {"arch": "conv4", "adapt": {"inner_steps": 10**9}},
            "model_config.adapt.inner_steps",
            "between 1 and 100",
        ),
        ({"arch": "conv4", "hidden": 64.0}, "model_config.hidden", "must be an integer, got 64.0"),
        ({"arch": "conv4", "layers": 7}, "model_config.layers", "between 1 and 6"),
        ({"arch": "conv4", "head": "linear"}, "model_config.out_features", "must be >= 1 for a linear head"),
        ({"arch": "conv4", "surprise": 1}, "model_config.surprise", "unknown setting 'surprise'"),
        (
            {"arch": "neural_process", "encoder_layers": 4096},
            "model_config.encoder_layers",
            "between 1 and 16",
        ),
        ({"arch": "transformer"}, "model_config.arch", "must be one of"),
        ([1, 2], "model_config", "must be an object"),
    ],
)
def test_a_config_outside_its_declaration_is_refused_naming_the_field(config, field, message):
    with pytest.raises(ConfigError) as refused:
        parse_model_config(config)
    assert refused.value.field == field
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("blob", "claim", "field", "message"),
    [
        (
            model_weights("maml"),
            ("protonet", "conv4"),
            "algorithm",
            "the weights file says 'maml', not 'protonet'",
        ),
        (model_weights("protonet"), ("protonet", "mlp"), "architecture", "says 'conv4', not 'mlp'"),
        (
            _file({"arch": "mlp", "hidden": [8]}, "protonet"),
            ("protonet", "mlp"),
            "algorithm",
            "no models of arch",
        ),
        (
            _file({"arch": "conv4", "head": "none", "hidden": 4}, "maml"),
            ("maml", "conv4"),
            "model_config.head",
            "maml models have head 'linear'",
        ),
        (
            _file({"arch": "conv4", "head": "linear", "out_features": 5, "hidden": 4}, "maml"),
            ("maml", "conv4"),
            "model_config.adapt",
            "record their adaptation settings",
        ),
        (
            _file({"arch": "neural_process", "kind": "np"}, "cnp"),
            ("cnp", "neural_process"),
            "model_config.kind",
            "cnp models have kind 'cnp'",
        ),
        (_file({"arch": "conv4", "hidden": 4}, "protonet"), ("protonet", "conv4"), "weights", "missing ["),
        (b"\x00" * 64, ("protonet", "conv4"), "weights", "not a MetaKB weights file"),
    ],
    ids=["algorithm", "architecture", "no-such-model", "head", "adapt", "kind", "tensors", "garbage"],
)
def test_a_file_that_is_not_what_it_claims_is_refused(blob, claim, field, message):
    algorithm, arch = claim
    with pytest.raises(ConfigError) as refused:
        check_weights_file(blob, algorithm=algorithm, architecture=arch)
    assert refused.value.field == field
    assert message in str(refused.value)


def test_tensors_of_the_wrong_shape_or_dtype_are_refused():
    good = model_weights("protonet")
    weights, config, _ = weights_from_bytes(good)
    wider = {**config, "hidden": 8}
    with pytest.raises(
        ConfigError, match=r"tensor 'features.0.weight' is F32 \[4, 1, 3, 3\]; .* needs F32 \[8, 1, 3, 3\]"
    ):
        check_weights_file(_file(wider, "protonet", weights), algorithm="protonet", architecture="conv4")
    doubles = {k: v.double() for k, v in weights.items()}
    with pytest.raises(ConfigError, match="is F64"):
        check_weights_file(_file(config, "protonet", doubles), algorithm="protonet", architecture="conv4")


def test_a_config_that_promises_a_huge_net_gets_no_memory_for_it(monkeypatch):
    # conv4 with 1024 channels is about 113 MB of float32; the file holds 4 bytes. The net is
    # built on the meta device (shapes only), so the mismatch is found before any allocation.
    built = []

    def spy(config):
        built.append(real_build(config))
        return built[-1]

    real_build = weights_module.build_model
    monkeypatch.setattr(weights_module, "build_model", spy)
    with pytest.raises(ValueError, match="weights do not match"):
        load_model({"w": torch.zeros(1)}, {"arch": "conv4", "hidden": 1024, "head": "none"})
    assert {p.device.type for p in built[0].parameters()} == {"meta"}


def test_the_same_weights_and_config_always_give_the_same_bytes():
    # Files are named by their content hash, so equal content must be equal bytes.
    net = build_model(MODEL_CONFIGS["maml"])
    blobs = {weights_to_bytes(net.state_dict(), MODEL_CONFIGS["maml"], "maml") for _ in range(10)}
    assert len(blobs) == 1
