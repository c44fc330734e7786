"""Real weights files for tests: a small net of each kind, as the engine saves them."""

from __future__ import annotations

from typing import Any

import torch

from learning.engine.nets import build_model
from learning.engine.weights import weights_to_bytes

ADAPT = {"inner_lr": 0.4, "inner_steps": 1}
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "protonet": {"arch": "conv4", "hidden": 4, "head": "none"},
    "siamese": {"arch": "conv4", "hidden": 4, "head": "siamese"},
    "maml": {"arch": "conv4", "hidden": 4, "head": "linear", "out_features": 5, "adapt": ADAPT},
    "fomaml": {"arch": "conv4", "hidden": 4, "head": "linear", "out_features": 5, "adapt": ADAPT},
    "reptile": {"arch": "conv4", "hidden": 4, "head": "linear", "out_features": 5, "adapt": ADAPT},
    "statistician": {"arch": "statistician", "hidden": 4, "context_dim": 4, "latent_dim": 2, "mlp_hidden": 8},
    "finetune": {"arch": "conv4_transfer", "hidden": 4, "classes": 10},
    "cnp": {"arch": "neural_process", "kind": "cnp", "hidden": 8, "latent_dim": 4},
    "np": {"arch": "neural_process", "kind": "np", "hidden": 8, "latent_dim": 4},
}
"""A small model_config per algorithm (image algorithms on 28x28 images)."""

MLP_CONFIG: dict[str, Any] = {"arch": "mlp", "hidden": [8, 8], "adapt": {"inner_lr": 0.01, "inner_steps": 1}}
"""A small model_config of a function-domain MAML-family model (``maml``, ``fomaml``,
``reptile`` on ``mlp``): ``model_weights("maml", arch="mlp")``."""


def model_weights(algorithm: str = "protonet", *, seed: int = 0, **config: Any) -> bytes:
    """A weights file of ``algorithm`` (its small config, updated with ``config``); ``seed``
    varies the values, so different seeds give different files, and the same arguments the
    same bytes. ``arch="mlp"`` starts from :data:`MLP_CONFIG` instead (a function-domain
    model of a MAML-family algorithm)."""
    base = MLP_CONFIG if config.get("arch") == "mlp" else MODEL_CONFIGS[algorithm]
    model_config = {**base, **config}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(model_config)
    return weights_to_bytes(net.state_dict(), model_config, algorithm)


def architecture(algorithm: str) -> str:
    """The ``architecture`` a model of ``algorithm`` is registered with."""
    return MODEL_CONFIGS[algorithm]["arch"]
