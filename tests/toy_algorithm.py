"""A toy algorithm, added the way CONTRIBUTING.md says: one module with one config dataclass.

It trains and classifies exactly as ProtoNet does, and declares one setting of its own
(``temperature``), so a test can follow a new algorithm and its setting into the engine,
the launch form and the API schema. Importing the module registers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from learning.engine.algorithms.protonet import classify_protonet, train_protonet
from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.settings import ImageConfig
from learning.engine.loop import TrainResult
from learning.engine.params import param

NAME = "toy_protonet"


@dataclass(frozen=True)
class ToyConfig(ImageConfig):
    """ProtoNet under another name, with a setting of its own."""

    temperature: float = param(
        1.0, minimum=0.0, exclusive_minimum=True, maximum=100.0, help="softmax temperature", form=True
    )


def train_toy(config: dict[str, Any], data: Any, **callbacks: Any) -> TrainResult:
    """ProtoNet's training (``config`` already validated); returns its :class:`TrainResult`."""
    return train_protonet(config, data, **callbacks)


register_algorithm(NAME, train_toy, config=ToyConfig, label="Toy ProtoNet", classify=classify_protonet)
