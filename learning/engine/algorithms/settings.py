"""Settings shared by several algorithms, declared once, and the image algorithms' base config.

The bounds here are the only ones: the engine, the API and the launch form all read them.
They are sized so that one request cannot book a worker for days (200,000 steps, 256
tasks a batch, 100 inner steps) while covering every setting the literature uses.

An image config (every key optional except ``algorithm``; defaults differ per algorithm)::

    {
      "algorithm": "maml", "domain": "image",
      "model": {"arch": "conv4", "hidden": 64, "layers": 4},
      "task": {"n_way": 5, "k_shot": 1, "query": 5, "within_group": false,
               "meta_train_classes": null,      # class indices, or
               "meta_train_groups": null},      # group names (e.g. alphabets); neither: all classes
      "steps": 1000, "meta_batch": 32, "outer_lr": 0.001, "seed": 0, "device": "auto",
      "checkpoint_every": 100, "rotations": true,
      "inner_lr": 0.4, "inner_steps": 1, "task_chunk": 0,          # MAML family and Reptile
      "eval_inner_lr": 0.4, "eval_inner_steps": 1                 # adaptation when the model is used
    }

``task_chunk`` is how many tasks one vmap call adapts; a stop request is honoured
between chunks, so on CPU small chunks keep the stop latency under a second. 0 (the
default) means 4 on CPU and the whole meta-batch on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

from learning.engine.config import ConfigError
from learning.engine.device import DEVICE_CHOICES
from learning.engine.model_configs import CONV_HIDDEN, CONV_LAYERS, EVAL_INNER_LR, EVAL_INNER_STEPS
from learning.engine.params import Param, param, section

STEPS = Param(minimum=1, maximum=200_000, help="training steps (one meta-batch or batch each)", form=True)
META_BATCH = Param(minimum=1, maximum=256, help="tasks per meta-update", form=True)
OUTER_LR = Param(
    minimum=0.0,
    exclusive_minimum=True,
    maximum=100.0,
    help="learning rate of the meta-update",
    label="Outer learning rate",
    form=True,
)
LR = Param(
    minimum=0.0,
    exclusive_minimum=True,
    maximum=10.0,
    help="Adam's learning rate",
    label="Learning rate",
    form=True,
)
SEED = Param(minimum=0, maximum=2**63 - 1, help="seeds the episodes and the initialization", form=True)
DEVICE = Param(
    choices=DEVICE_CHOICES, pattern=r"cuda:\d+", help="auto picks CUDA when present; or cpu, cuda, cuda:<i>"
)
CHECKPOINT_EVERY = Param(minimum=0, help="steps between checkpoints (0: only when stopped)")
INNER_LR = Param(
    minimum=0.0,
    exclusive_minimum=True,
    maximum=100.0,
    help="step size of task adaptation",
    label="Inner learning rate",
    form=True,
)
INNER_STEPS = Param(minimum=1, maximum=100, help="gradient steps of task adaptation", form=True)
TASK_CHUNK = Param(minimum=0, maximum=256, help="tasks per vmap call; 0: 4 on CPU, all on CUDA")
N_WAY = Param(minimum=2, maximum=1000, help="classes per episode")
K_SHOT = Param(minimum=1, maximum=1000, help="labelled examples per class")
QUERY = Param(minimum=1, maximum=1000, help="query examples per class")


@dataclass(frozen=True)
class Conv4Section:
    """The Conv4 backbone of the image algorithms."""

    arch: str = param("conv4", choices=("conv4",), help="backbone")
    hidden: int = CONV_HIDDEN.field(64)
    layers: int = CONV_LAYERS.field(4)


@dataclass(frozen=True)
class EpisodeSection:
    """The few-shot episodes of meta-training and which classes they come from."""

    n_way: int = N_WAY.field(5)
    k_shot: int = K_SHOT.field(1)
    query: int = QUERY.field(5)
    within_group: bool = param(False, help="draw each episode's classes from one group (alphabet)")
    meta_train_classes: tuple[int, ...] | None = param(None, minimum=0, help="class indices to train on")
    meta_train_groups: tuple[str, ...] | None = param(None, help="group names to train on (or classes)")

    def check(self) -> None:
        if self.meta_train_classes is not None and self.meta_train_groups is not None:
            raise ConfigError(
                "task.meta_train_groups", "give meta_train_classes or meta_train_groups, not both"
            )


def episodes(query: int) -> EpisodeSection:
    """The episode section with an algorithm's default ``query``."""
    return EpisodeSection(query=query)


@dataclass(frozen=True)
class ImageConfig:
    """Settings every image algorithm shares (see the module docstring)."""

    algorithm: str = param("", help="the algorithm")
    domain: str = param("image", choices=("image",), help="kind of data")
    model: Conv4Section = section(Conv4Section, "the backbone")
    task: EpisodeSection = section(EpisodeSection, "the meta-training episodes")
    steps: int = STEPS.field(2000)
    meta_batch: int = META_BATCH.field(32)
    outer_lr: float = OUTER_LR.field(1e-3)
    seed: int = SEED.field(0)
    device: str = DEVICE.field("auto")
    checkpoint_every: int = CHECKPOINT_EVERY.field(100)
    rotations: bool = param(True, help="add 90/180/270-degree rotations as new classes (Omniglot)")


@dataclass(frozen=True)
class InnerLoopConfig(ImageConfig):
    """Image algorithms that adapt to each task with gradient steps (MAML family, Reptile)."""

    inner_lr: float = INNER_LR.field(0.4)
    inner_steps: int = INNER_STEPS.field(1)
    task_chunk: int = TASK_CHUNK.field(0)
    eval_inner_lr: float = EVAL_INNER_LR.field(0.4, default_from="inner_lr")
    eval_inner_steps: int = EVAL_INNER_STEPS.field(1, default_from="inner_steps")
