"""The config of the transfer methods, one dataclass each; see :mod:`learning.engine.algorithms.transfer`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from learning.engine.algorithms.settings import CHECKPOINT_EVERY, DEVICE, LR, SEED, STEPS
from learning.engine.config import ConfigError
from learning.engine.params import as_dict, param, parse, required, section


@dataclass(frozen=True)
class SourceModelSection:
    """The source model, when the config records it (the data carries its weights)."""

    algorithm: str = required(help="the source's algorithm")
    model_config: dict = required(help="the source's model config")


@dataclass(frozen=True)
class TargetSection:
    """Which target classes the transfer trains on, and how many examples of each."""

    train_classes: tuple[int, ...] | None = param(None, minimum=0, help="target class indices")
    train_groups: tuple[str, ...] | None = param(None, help="target group names (or classes)")
    examples_per_class: int = param(0, minimum=0, maximum=100_000, help="0: every example")

    def check(self) -> None:
        if self.train_classes is not None and self.train_groups is not None:
            raise ConfigError("target.train_groups", "give train_classes or train_groups, not both")


@dataclass(frozen=True)
class TransferConfig:
    """Settings every transfer method (and the scratch baseline) shares."""

    algorithm: str = param("", help="the transfer method")
    domain: str = param("image", choices=("image", "text"), help="kind of data")
    source_model: SourceModelSection | None = param(None, help="the source model (informative)")
    target: TargetSection = section(TargetSection, "the target training data")
    steps: int = STEPS.field(200)
    batch_size: int = param(32, minimum=2, maximum=4096, help="target examples per step")
    lr: float = LR.field(1e-3)
    seed: int = SEED.field(0)
    device: str = DEVICE.field("auto")
    checkpoint_every: int = CHECKPOINT_EVERY.field(50)


@dataclass(frozen=True)
class ScratchConfig(TransferConfig):
    """Training on the target from a fresh init: the baseline every transfer is compared with."""

    layers: str = param("all", choices=("all", "head"), help="which layers train")
    head_init: str = param("prototypes", choices=("random", "prototypes"), help="initial classifier head")


@dataclass(frozen=True)
class FinetuneConfig(ScratchConfig):
    """Parameter transfer: fine-tune the source, optionally pulled toward it (L2-SP, Li et al. 2018)."""

    l2sp: float = param(
        0.0,
        minimum=0.0,
        maximum=1e6,
        help="weight of the backbone's L2 distance to the source (0: plain fine-tuning)",
        label="L2-SP weight",
        form=True,
    )
    l2sp_beta: float = param(
        0.0,
        minimum=0.0,
        maximum=1e6,
        help="weight of L2 on the new head",
        label="L2-SP head weight",
        form=True,
    )

    def check(self) -> None:
        if self.l2sp > 0 and self.layers == "head":
            raise ConfigError("l2sp", "regularizes the backbone toward the source, but layers is 'head'")


@dataclass(frozen=True)
class FeatureConfig(TransferConfig):
    """Feature-representation transfer: the source backbone frozen, a new head trained on its features."""

    head: str = param("logistic", choices=("logistic", "prototypes"), help="the new head")
    weight_decay: float = param(1e-4, minimum=0.0, maximum=1e6, help="L2 weight of the head")


@dataclass(frozen=True)
class InstanceConfig(TransferConfig):
    """Instance transfer: source examples reweighted toward the target train next to the target's."""

    weighting: str = param(
        "domain_classifier", choices=("domain_classifier", "kmm"), help="how source examples are weighted"
    )
    source_classes: tuple[int, ...] | None = param(None, minimum=0, help="source class indices to use")
    source_groups: tuple[str, ...] | None = param(None, help="source group names to use (or classes)")
    source_batch: int = param(
        32, minimum=1, maximum=4096, default_from="batch_size", help="source examples per step"
    )
    max_weight: float = param(
        10.0, minimum=0.0, exclusive_minimum=True, maximum=1e6, help="cap on one example's weight"
    )

    def check(self) -> None:
        if self.source_classes is not None and self.source_groups is not None:
            raise ConfigError("source_groups", "give source_classes or source_groups, not both")


@dataclass(frozen=True)
class StudentSection:
    """The RKD student's backbone."""

    hidden: int | None = param(
        None,
        minimum=1,
        maximum=1024,
        help="channels of each conv block (images) or width of each hidden layer (text); null: the source's",
    )


@dataclass(frozen=True)
class RKDConfig(TransferConfig):
    """Relational-knowledge transfer: a student trained on the target while keeping the source's relations.

    The weights 25 and 50 are those RKD is used with next to a cross-entropy task loss (e.g.
    in RepDistiller); the paper's metric-learning runs, with no task loss, use 1 and 2.
    """

    distance_weight: float = param(25.0, minimum=0.0, maximum=1e6, help="weight of the distance loss")
    angle_weight: float = param(50.0, minimum=0.0, maximum=1e6, help="weight of the angle loss")
    student: StudentSection = section(StudentSection, "the student network")


def scratch_config(config: dict[str, Any]) -> dict[str, Any]:
    """The baseline of a validated transfer config: the same training from a fresh init (``scratch``).

    It keeps every setting the baseline has (data, steps, optimizer, and the layers and head
    of a fine-tune) and drops the method's own.
    """
    names = {f.name for f in dataclasses.fields(ScratchConfig)}
    return as_dict(
        parse(ScratchConfig, {k: v for k, v in config.items() if k in names} | {"algorithm": "scratch"})
    )
