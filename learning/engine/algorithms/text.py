"""ProtoNet, MAML, first-order MAML and Reptile on text domains (``config["domain"] == "text"``).

A text domain is :class:`learning.engine.data.TextArrays`: every text embedded once by the
frozen sentence encoder (:mod:`learning.engine.text_encoder`, 384-d, unit norm). The
algorithms are the image ones, unchanged (the same train and classify functions: episodes
from :class:`learning.engine.episodes.EpisodeSampler`, which draws embedding rows for text),
with a small ReLU MLP over the embeddings in place of the Conv4
(:class:`learning.engine.nets.TextMLP`, ``arch`` ``text_mlp``): its last layer gives the
ProtoNet embedding, or feeds an ``n_way`` linear head for the MAML family. Only the
configs differ: no image settings (no rotations), the MLP's widths, and defaults sized for
embeddings. Evaluation and predictions go through the same protocol
(:mod:`learning.engine.experiments`, :mod:`learning.engine.predict`).

A text config (every key optional except ``algorithm``)::

    {
      "algorithm": "protonet", "domain": "text",
      "model": {"arch": "text_mlp", "hidden": [256]},          # ProtoNet: [512]
      "task": {"n_way": 5, "k_shot": 1, "query": 15, "within_group": false,
               "meta_train_classes": null, "meta_train_groups": null},
      "steps": 500, "meta_batch": 4, "outer_lr": 0.001, "seed": 0, "device": "auto",
      "checkpoint_every": 100,
      "inner_lr": 0.5, "inner_steps": 5, "task_chunk": 0,      # MAML family and Reptile
      "eval_inner_lr": 0.5, "eval_inner_steps": 5              # Reptile: 10 steps
    }

Defaults were chosen on CLINC150 (100 intents to meta-train, 50 held out, 5-way 1-shot,
``benchmarks/text_fewshot.py``); there no meta-trained net beat nearest class mean on the
frozen embeddings themselves, which the benchmark reports next to them.

The site offers them on text domains (:data:`OFFERED`), whose import embeds every text once.
"""

from __future__ import annotations

from dataclasses import dataclass

from learning.engine.algorithms.maml import classify_adapted, train_maml
from learning.engine.algorithms.protonet import classify_protonet, train_protonet
from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.reptile import train_reptile
from learning.engine.algorithms.settings import (
    CHECKPOINT_EVERY,
    DEVICE,
    INNER_LR,
    INNER_STEPS,
    META_BATCH,
    OUTER_LR,
    SEED,
    STEPS,
    TASK_CHUNK,
    EpisodeSection,
    episodes,
)
from learning.engine.data import TextArrays
from learning.engine.model_configs import EVAL_INNER_LR, EVAL_INNER_STEPS, MLP_HIDDEN
from learning.engine.nets import TEXT_ARCH
from learning.engine.params import param, section

OFFERED = True
"""Whether the site's forms and API offer the text algorithms."""


@dataclass(frozen=True)
class TextMLPSection:
    """The MLP over the frozen sentence embeddings."""

    arch: str = param(TEXT_ARCH, choices=(TEXT_ARCH,), help="backbone")
    hidden: tuple[int, ...] = MLP_HIDDEN.field((256,))


@dataclass(frozen=True)
class TextConfig:
    """Settings every text algorithm shares (see the module docstring)."""

    algorithm: str = param("", help="the algorithm")
    domain: str = param("text", choices=("text",), help="kind of data")
    model: TextMLPSection = section(TextMLPSection, "the MLP over the sentence embeddings")
    task: EpisodeSection = section(lambda: episodes(query=15), "the meta-training episodes")
    steps: int = STEPS.field(500)
    meta_batch: int = META_BATCH.field(4)
    outer_lr: float = OUTER_LR.field(1e-3)
    seed: int = SEED.field(0)
    device: str = DEVICE.field("auto")
    checkpoint_every: int = CHECKPOINT_EVERY.field(100)


@dataclass(frozen=True)
class TextProtoNetConfig(TextConfig):
    """Prototypical Networks on sentence embeddings: a linear projection to 512-d (one hidden width),
    squared Euclidean distance."""

    model: TextMLPSection = section(lambda: TextMLPSection(hidden=(512,)), "the MLP over the embeddings")


@dataclass(frozen=True)
class TextMAMLConfig(TextConfig):
    """MAML and first-order MAML on sentence embeddings: an MLP with an ``n_way`` linear head."""

    inner_lr: float = INNER_LR.field(0.5)
    inner_steps: int = INNER_STEPS.field(5)
    task_chunk: int = TASK_CHUNK.field(0)
    eval_inner_lr: float = EVAL_INNER_LR.field(0.5, default_from="inner_lr")
    eval_inner_steps: int = EVAL_INNER_STEPS.field(5, default_from="inner_steps")


@dataclass(frozen=True)
class TextReptileConfig(TextMAMLConfig):
    """Reptile on sentence embeddings; ``outer_lr`` is the initial meta step size, annealed to 0."""

    meta_batch: int = META_BATCH.field(5)
    outer_lr: float = OUTER_LR.field(1.0, help="initial meta step size, annealed linearly to 0")
    inner_steps: int = INNER_STEPS.field(5)
    eval_inner_steps: int = EVAL_INNER_STEPS.field(10)


register_algorithm(
    "protonet",
    train_protonet,
    config=TextProtoNetConfig,
    label="Prototypical Networks",
    classify=classify_protonet,
    domain="text",
    data_type=TextArrays,
    offered=OFFERED,
    model={"arch": TEXT_ARCH, "head": "none"},
)
for _name, _train, _config, _label in (
    ("maml", train_maml, TextMAMLConfig, "MAML (second order)"),
    ("fomaml", train_maml, TextMAMLConfig, "First-order MAML"),
    ("reptile", train_reptile, TextReptileConfig, "Reptile"),
):
    register_algorithm(
        _name,
        _train,
        config=_config,
        label=_label,
        classify=classify_adapted,
        domain="text",
        data_type=TextArrays,
        offered=OFFERED,
        model={"arch": TEXT_ARCH, "head": "linear"},
        adapts=True,
    )
