"""Transfer to new targets: parameter, feature-representation, instance and relational-knowledge transfer.

Every method starts from a trained SOURCE model and trains on the training classes of a
TARGET domain of the same kind:

- images (``domain`` ``"image"``): the source is any image model with a Conv4 backbone
  (ProtoNet, MAML, Siamese, a statistician's encoder, or an earlier transfer); the result is a
  :class:`TransferNet` (arch ``conv4_transfer``);
- text (``domain`` ``"text"``, a :class:`learning.engine.data.TextArrays` target of sentence
  embeddings): the source is a text model (arch ``text_mlp``, or an earlier text transfer) whose
  MLP body is the backbone; the result is a :class:`TextTransferNet` (arch ``text_transfer``).

Either is a :class:`BackboneClassifier`: the backbone plus a linear classifier over the target's
training classes. It is evaluated two ways:

- ``target_accuracy``: its classifier on the unused examples of the target training classes;
- few-shot accuracy on N-way K-shot episodes of NEW target classes by nearest prototype
  on the backbone features (:func:`classify_transfer`, registered for every method), so
  :func:`learning.engine.evaluation.evaluate_classifier` and ``paired_comparison`` compare a
  transferred model with one trained from scratch on identical episodes.

Methods (``config["algorithm"]``, each in the ``image`` and ``text`` domains, data :class:`TransferData`;
the text entries are offered to the site with the text algorithms, :data:`.text.OFFERED`):

- ``scratch``: the baseline. The training of ``finetune`` from a fresh initialization of the
  source's architecture, with the same data, steps and optimizer.
- ``finetune`` (parameter transfer): the source backbone plus a new linear head, trained with
  cross-entropy on minibatches of the target; ``layers`` ``"all"`` or ``"head"`` (backbone
  frozen). ``head_init`` ``"prototypes"`` (the default) starts the head as the class-mean
  classifier of the initial features (imprinting), ``"random"`` from a random layer.
  ``l2sp`` > 0 adds L2-SP (Li, Grandvalet and Davoine, 2018):
  ``alpha/2 ||w_backbone - w_source||^2 + beta/2 ||w_head||^2`` with ``alpha = l2sp``,
  ``beta = l2sp_beta``.
- ``feature`` (feature-representation transfer): the source backbone frozen; a head fitted on
  its features of the target examples: ``head`` ``"logistic"`` (multinomial logistic
  regression, full batch, Adam, L2 ``weight_decay``, started from the prototype classifier)
  or ``"prototypes"`` (class means, stored
  as the equivalent linear layer ``2 p . f - ||p||^2``, one step).
- ``instance`` (instance transfer): a fresh model trained on the target examples together with
  labelled SOURCE examples (``TransferData.source_data``, as extra classes of the head), each
  source example's loss weighted by how target-like it is, estimated on the source model's
  features: ``weighting`` ``"domain_classifier"`` (logistic regression target-vs-source,
  ``w = p(target|x) / p(source|x) * n_source / n_target``, the density ratio
  ``p_target(x) / p_source(x)``; Bickel et al., 2007) or ``"kmm"`` (kernel mean matching,
  Huang et al., 2007). Weights are clipped to ``[0, max_weight]``. The features for the weights
  are computed on target and source examples shuffled together
  (:func:`.instance.joint_features`): the nets' batch-statistics norm would otherwise
  normalize each domain's shift away. The model
  starts from a fresh initialization, so any gain comes from the reused examples.
- ``rkd`` (relational-knowledge transfer): a fresh student trained on the target with
  cross-entropy plus Relational Knowledge Distillation (Park et al., 2019) from the source
  backbone (teacher) on the same examples: the distance-wise loss (pairwise distances divided
  by their mean, Huber loss) weighted ``distance_weight`` and the angle-wise loss (cosines of
  the angles of all triplets, Huber loss) weighted ``angle_weight``. ``student.hidden`` may
  differ from the teacher's width (relations need no matching dimensions): the filters of every
  conv block, or the width of every hidden layer of a text MLP.

Config (every key optional except ``algorithm``)::

    {
      "algorithm": "finetune", "domain": "image",   # or "text"; by default the target's kind
      "source_model": {"algorithm": "protonet", "model_config": {...}},  # optional; must match the data
      "target": {"train_classes": null, "train_groups": null,  # target training classes (neither: all)
                 "examples_per_class": 0},                     # first K examples of each (0: all)
      "steps": 200, "batch_size": 32, "lr": 0.001, "seed": 0, "device": "auto", "checkpoint_every": 50,
      # scratch / finetune:  "layers": "all", "head_init": "prototypes",
      #                      "l2sp": 0.0, "l2sp_beta": 0.0                     (l2sp: finetune only)
      # feature:             "head": "logistic", "weight_decay": 0.0001
      # instance:            "weighting": "domain_classifier", "source_classes": null,
      #                      "source_groups": null, "source_batch": 32, "max_weight": 10.0
      # rkd:                 "distance_weight": 25.0, "angle_weight": 50.0, "student": {"hidden": null}
    }

Training minibatches are drawn from ``(seed, step)`` (:func:`episode_rng`), and everything
computed before the loop (features, instance weights) is deterministic, so
:func:`learning.engine.loop.run_training` resumes a stopped run to bitwise the same weights.
The resume fingerprint includes a digest of the source weights: resuming onto another
source is refused.

From the Django side (a source MetaModel's artifact bytes, the target domain's arrays)::

    data = TransferData.from_weights_bytes(target_arrays, artifact_bytes,
                                           source_data=source_arrays,          # instance only
                                           source_class_names=source_seen)     # its train classes
    report = transfer_and_compare({"algorithm": "finetune", "target": {...}, ...}, data, plan, shots)

:func:`learning.engine.experiments.transfer_and_compare` trains the method and the scratch
baseline and compares them on identical episodes of new target classes.

The modules: :mod:`.data` (the inputs, the source backbone), :mod:`.config` (one config
dataclass per method), :mod:`.common` (target split, run loop, closing scores,
:func:`classify_transfer`), one per kind of method (:mod:`.parameter` for ``scratch`` and
``finetune``, :mod:`.feature`, :mod:`.instance`, :mod:`.relational` for ``rkd``), and this
package, which registers the five methods for both domains. The nets themselves live in
:mod:`learning.engine.nets`, so a saved transfer model is rebuilt without this package.
"""

from __future__ import annotations

from typing import Any

from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.text import OFFERED as TEXT_OFFERED
from learning.engine.algorithms.transfer.common import classify_transfer
from learning.engine.algorithms.transfer.config import (
    FeatureConfig,
    FinetuneConfig,
    InstanceConfig,
    RKDConfig,
    ScratchConfig,
    TransferConfig,
    scratch_config,
)
from learning.engine.algorithms.transfer.data import TransferData, source_backbone, weights_digest
from learning.engine.algorithms.transfer.feature import train_feature
from learning.engine.algorithms.transfer.instance import (
    domain_classifier_weights,
    kmm_weights,
    train_instance,
)
from learning.engine.algorithms.transfer.parameter import train_parameter
from learning.engine.algorithms.transfer.relational import rkd_angle_loss, rkd_distance_loss, train_rkd
from learning.engine.nets import (
    TEXT_TRANSFER_ARCH,
    TRANSFER_ARCH,
    BackboneClassifier,
    TextTransferNet,
    TransferNet,
)

METHODS: dict[str, tuple[Any, type, str]] = {
    "scratch": (train_parameter, ScratchConfig, "Baseline: the same training from a fresh init"),
    "finetune": (
        train_parameter,
        FinetuneConfig,
        "Parameter transfer: fine-tune the source (optionally L2-SP)",
    ),
    "feature": (train_feature, FeatureConfig, "Feature-representation transfer: frozen backbone, new head"),
    "instance": (
        train_instance,
        InstanceConfig,
        "Instance transfer: target plus reweighted source examples",
    ),
    "rkd": (train_rkd, RKDConfig, "Relational-knowledge transfer: distill the source's relations (RKD)"),
}
"""Method name -> (train function, config, label); ``scratch`` and ``finetune`` share one implementation."""
TRANSFER_ALGORITHMS: tuple[str, ...] = tuple(METHODS)

DOMAINS: dict[str, tuple[str, bool]] = {
    "image": (TRANSFER_ARCH, True),
    "text": (TEXT_TRANSFER_ARCH, TEXT_OFFERED),
}
"""Domain -> (the arch of its transfer nets, whether the site offers the methods there)."""

for _domain, (_arch, _offered) in DOMAINS.items():
    for _name, (_fn, _config, _label) in METHODS.items():
        register_algorithm(
            _name,
            _fn,
            config=_config,
            label=_label,
            kind="baseline" if _name == "scratch" else "transfer",
            classify=classify_transfer,
            domain=_domain,
            data_type=TransferData,
            offered=_offered,
            model={"arch": _arch},
        )

__all__ = [
    "DOMAINS",
    "METHODS",
    "TEXT_TRANSFER_ARCH",
    "TRANSFER_ALGORITHMS",
    "TRANSFER_ARCH",
    "BackboneClassifier",
    "FeatureConfig",
    "FinetuneConfig",
    "InstanceConfig",
    "RKDConfig",
    "ScratchConfig",
    "TextTransferNet",
    "TransferConfig",
    "TransferData",
    "TransferNet",
    "classify_transfer",
    "domain_classifier_weights",
    "kmm_weights",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "scratch_config",
    "source_backbone",
    "train_feature",
    "train_instance",
    "train_parameter",
    "train_rkd",
    "weights_digest",
]
