"""Weights files, device selection and the engine's Omniglot reader."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from learning.engine.checkpoints import CheckpointFormatError
from learning.engine.device import DeviceUnavailableError, resolve_device
from learning.engine.nets import build_model
from learning.engine.omniglot import OmniglotFormatError, load_omniglot_zip
from learning.engine.weights import load_model, weights_from_bytes, weights_to_bytes

CONFIG = {
    "arch": "conv4",
    "in_channels": 1,
    "image_size": 28,
    "hidden": 8,
    "layers": 4,
    "head": "linear",
    "out_features": 5,
    "adapt": {"inner_lr": 0.4, "inner_steps": 1},
}


def test_weights_round_trip_rebuilds_the_same_function():
    # given a model
    torch.manual_seed(0)
    model = build_model(CONFIG)
    x = torch.rand(6, 1, 28, 28)
    # when its weights go to bytes and back
    blob = weights_to_bytes(model.state_dict(), CONFIG, "maml")
    weights, config, algorithm = weights_from_bytes(blob)
    rebuilt = load_model(weights, config)
    # then
    assert config == CONFIG and algorithm == "maml"
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rebuilt(x), model(x))


def test_bad_weight_files_are_refused():
    torch.manual_seed(0)
    good = build_model(CONFIG).state_dict()
    with pytest.raises(CheckpointFormatError):
        weights_from_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="do not match"):
        load_model(good, {**CONFIG, "hidden": 16})
    with pytest.raises(ValueError, match="unknown model arch 'vit'"):
        build_model({"arch": "vit"})


def test_mlp_and_siamese_archs_build():
    mlp = build_model({"arch": "mlp"})
    assert mlp(torch.zeros(3, 1)).shape == (3, 1)
    siamese = build_model({**CONFIG, "head": "siamese"})
    emb = siamese(torch.rand(4, 1, 28, 28))
    assert emb.shape == (4, 8) and siamese.pair_logits(emb[:2], emb[2:]).shape == (2,)


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_omniglot_small1_is_read_with_the_usual_protocol(omniglot_small1):
    data = omniglot_small1
    assert data.images.shape == (2720, 28, 28) and data.num_classes == 136
    assert data.groups == ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
    assert (data.class_counts() == 20).all()
    assert data.class_names[0] == "Balinese/character01" and data.class_groups[0] == "Balinese"
    # ink is high: a corner pixel is background (0) and a drawing covers a minority of pixels with ink
    assert (data.images[:, 0, 0] == 0).all()
    assert 0.03 < (data.images > 128).mean() < 0.3


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_reader_resizes_inverts_and_orders(tmp_path):
    # given a zip with two characters of one alphabet, black ink on white
    page = np.full((105, 105), 255, dtype=np.uint8)
    page[:, :52] = 0
    path = tmp_path / "mini.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("top/Alpha/character02/b.png", _png(page))
        zf.writestr("top/Alpha/character01/z.png", _png(page))
        zf.writestr("top/Alpha/character01/a.png", _png(255 - page))
        zf.writestr("top/README.txt", "ignored")
    # when
    data = load_omniglot_zip(path)
    # then classes sorted, examples sorted by file name, 28x28, inverted (the left half was ink)
    assert data.class_names == ("Alpha/character01", "Alpha/character02")
    assert data.labels.tolist() == [0, 0, 1]
    assert data.images.shape == (3, 28, 28)
    assert data.images[1, 5, 0] == 255 and data.images[1, 5, 27] == 0
    assert data.images[0, 5, 0] == 0 and data.images[0, 5, 27] == 255
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("x.txt", "nothing")
    with pytest.raises(OmniglotFormatError):
        load_omniglot_zip(tmp_path / "empty.zip")
