"""Transfer to new targets: parameter, feature-representation, instance and relational-knowledge transfer.

Every method starts from a trained SOURCE model (a Conv4 backbone from any image
algorithm: ProtoNet, MAML, Siamese, or an earlier transfer) and trains on the training
classes of a TARGET image domain. The result is a :class:`TransferNet`: the Conv4
backbone plus a linear classifier over the target's training classes. It is evaluated
two ways:

- ``target_accuracy``: its classifier on the unused examples of the target training classes;
- few-shot accuracy on N-way K-shot episodes of NEW target classes by nearest prototype
  on the backbone features (:func:`classify_transfer`, registered for every method), so
  :func:`learning.engine.evaluation.evaluate_classifier` and ``paired_comparison`` compare a
  transferred model with one trained from scratch on identical episodes.

Methods (``config["algorithm"]``, all in the ``image`` domain, data :class:`TransferData`):

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
  are computed on target and source examples shuffled together (:func:`joint_features`): the
  nets' batch-statistics norm would otherwise normalize each domain's shift away. The model
  starts from a fresh initialization, so any gain comes from the reused examples.
- ``rkd`` (relational-knowledge transfer): a fresh student trained on the target with
  cross-entropy plus Relational Knowledge Distillation (Park et al., 2019) from the source
  backbone (teacher) on the same images: the distance-wise loss (pairwise distances divided
  by their mean, Huber loss) weighted ``distance_weight`` and the angle-wise loss (cosines of
  the angles of all triplets, Huber loss) weighted ``angle_weight``. ``student.hidden`` may
  differ from the teacher's width (relations need no matching dimensions).

Config (every key optional except ``algorithm``)::

    {
      "algorithm": "finetune", "domain": "image",
      "source_model": {"algorithm": "protonet", "model_config": {...}},  # optional; must match the data
      "target": {"train_classes": null, "train_groups": null,  # target training classes (neither: all)
                 "examples_per_class": 0},                     # first K examples of each (0: all)
      "steps": 200, "batch_size": 32, "lr": 0.001, "seed": 0, "device": "auto", "checkpoint_every": 50,
      "eval_episodes": 0, "eval_classes": null, "eval_groups": null, "eval_within_group": false,
      "eval_n_way": 5, "eval_k_shot": 1, "eval_query": 15,
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
    result = train({"algorithm": "finetune", "source_model": {"algorithm": ..., "model_config": ...},
                    "target": {...}, ...}, data, on_progress=..., should_stop=..., checkpoint=store)
    # result.weights / result.model_config / result.algorithm go to weights_to_bytes as usual;
    # evaluate_classifier(result.algorithm, ...) scores it on episodes of new target classes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import optimize
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.algorithms import register_algorithm
from learning.engine.algorithms._common import resolve_classes
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import (
    ConfigError,
    get_bool,
    get_choice,
    get_float,
    get_int,
    get_int_list,
    get_section,
    get_str_list,
    reject_unknown,
)
from learning.engine.data import ImageArrays
from learning.engine.device import DEVICE_CHOICES, resolve_device
from learning.engine.episodes import episode_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult, run_training
from learning.engine.nets import Conv4, SiameseNet, register_model
from learning.engine.transferability import features_of
from learning.engine.weights import load_model, weights_from_bytes

TRANSFER_ALGORITHMS: tuple[str, ...] = ("scratch", "finetune", "feature", "instance", "rkd")
TRANSFER_ARCH = "conv4_transfer"
TARGET_STREAM = 21
"""Episode-RNG stream of target minibatches (training samplers use 0, evaluation 7)."""
SOURCE_STREAM = 22
"""Stream of the source minibatches of ``instance``."""
WEIGHT_STREAM = 23
"""Stream of the permutation that mixes target and source examples for the instance weights' features."""
TARGET_EVAL_LIMIT = 2000
"""At most this many unused target examples are classified for ``target_accuracy``."""


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TransferData:
    """What a transfer run trains on.

    - ``target``: the target image domain (its training classes are chosen by ``config["target"]``);
    - ``source_weights``, ``source_model_config``, ``source_algorithm``: the source model, as
      :func:`learning.engine.weights.weights_from_bytes` returns them from a MetaModel artifact;
    - ``source_data``: the source domain's examples, needed only by ``instance``;
    - ``source_class_names``: the classes the source model was trained on (its
      ``TrainResult.train_class_names``), added to the result's ``train_class_names`` so an
      evaluation can refuse classes the source already saw.
    """

    target: ImageArrays
    source_weights: Mapping[str, Tensor]
    source_model_config: Mapping[str, Any]
    source_algorithm: str
    source_data: ImageArrays | None = None
    source_class_names: tuple[str, ...] = field(default=())

    @classmethod
    def from_weights_bytes(
        cls,
        target: ImageArrays,
        blob: bytes,
        *,
        source_data: ImageArrays | None = None,
        source_class_names: Sequence[str] = (),
    ) -> TransferData:
        """A :class:`TransferData` whose source is the safetensors ``blob`` of a MetaModel artifact."""
        weights, model_config, algorithm = weights_from_bytes(blob)
        return cls(target, weights, model_config, algorithm, source_data, tuple(source_class_names))


# --------------------------------------------------------------------------------------- model


class TransferNet(nn.Module):
    """A Conv4 backbone (no head) and a linear classifier over ``classes`` target (and source) classes.

    ``embed`` gives the backbone features ``(B, feature_dim)``; ``forward`` the logits ``(B, classes)``.
    The classifier is not called ``head`` on purpose: the few-shot evaluation refuses a net whose
    ``head`` does not match the episode's N, and this classifier is for the training classes only.
    """

    def __init__(
        self, in_channels: int = 1, hidden: int = 64, layers: int = 4, image_size: int = 28, classes: int = 1
    ) -> None:
        super().__init__()
        self.backbone = Conv4(in_channels, hidden, layers, image_size, out_features=0)
        self.classifier = nn.Linear(self.backbone.feature_dim, classes)

    def embed(self, x: Tensor) -> Tensor:
        """Backbone features ``(B, feature_dim)`` of images ``(B, C, H, W)``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, classes)``."""
        return self.classifier(self.embed(x))


def _build_transfer_net(cfg: Mapping[str, Any]) -> nn.Module:
    return TransferNet(
        int(cfg.get("in_channels", 1)),
        int(cfg.get("hidden", 64)),
        int(cfg.get("layers", 4)),
        int(cfg.get("image_size", 28)),
        int(cfg["classes"]),
    )


register_model(TRANSFER_ARCH, _build_transfer_net)


@dataclass(frozen=True)
class BackboneShape:
    """The Conv4 backbone's size: channels in, filters, conv blocks, image side (pixels)."""

    in_channels: int
    hidden: int
    layers: int
    image_size: int


def source_backbone(data: TransferData) -> tuple[Conv4, BackboneShape]:
    """The source's Conv4 backbone (a new head-less ``Conv4``, source weights, eval mode) and its shape.

    Raises :class:`ConfigError` (field ``source_model``) when the weights do not load or the
    model has no Conv4 backbone, or its input size differs from the target's images.
    """
    try:
        model = load_model(data.source_weights, data.source_model_config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("source_model", f"the source weights do not load: {exc}") from exc
    if isinstance(model, TransferNet):
        net: nn.Module = model.backbone
    elif isinstance(model, SiameseNet):
        net = model.encoder
    elif isinstance(model, Conv4):
        net = model
    else:
        raise ConfigError(
            "source_model", f"a {type(model).__name__} ({data.source_algorithm}) has no Conv4 backbone"
        )
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    shape = BackboneShape(
        in_channels=convs[0].in_channels,
        hidden=convs[0].out_channels,
        layers=len(convs),
        image_size=int(data.source_model_config.get("image_size", 28)),
    )
    side = int(data.target.images.shape[1])
    if shape.in_channels != 1 or shape.image_size != side:
        raise ConfigError(
            "source_model",
            f"the source takes {shape.in_channels}-channel {shape.image_size}px images; "
            f"the target has 1-channel {side}px images",
        )
    backbone = Conv4(shape.in_channels, shape.hidden, shape.layers, shape.image_size, out_features=0)
    backbone.features.load_state_dict(net.features.state_dict())
    return backbone.eval(), shape


def weights_digest(weights: Mapping[str, Tensor]) -> str:
    """SHA-256 hex of the tensors (names, dtypes, shapes and bytes), independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------------------- config

COMMON_KEYS = (
    "algorithm",
    "domain",
    "source_model",
    "target",
    "steps",
    "batch_size",
    "lr",
    "seed",
    "device",
    "checkpoint_every",
    "eval_episodes",
    "eval_classes",
    "eval_groups",
    "eval_within_group",
    "eval_n_way",
    "eval_k_shot",
    "eval_query",
)
METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "scratch": ("layers", "head_init"),
    "finetune": ("layers", "head_init", "l2sp", "l2sp_beta"),
    "feature": ("head", "weight_decay"),
    "instance": ("weighting", "source_classes", "source_groups", "source_batch", "max_weight"),
    "rkd": ("distance_weight", "angle_weight", "student"),
}
TARGET_KEYS = ("train_classes", "train_groups", "examples_per_class")


def validate_transfer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The complete config of a transfer method (see the module docstring); raises :class:`ConfigError`."""
    name = config["algorithm"]
    if name not in METHOD_KEYS:
        raise ConfigError("algorithm", f"not a transfer method: {name!r}")
    reject_unknown(config, COMMON_KEYS + METHOD_KEYS[name])
    out: dict[str, Any] = {"algorithm": name, "domain": config.get("domain", "image")}
    if out["domain"] != "image":
        raise ConfigError("domain", f"{name!r} transfers image models, got domain {out['domain']!r}")

    source = config.get("source_model")
    if source is not None:
        source = get_section(config, "source_model")
        reject_unknown(source, ("algorithm", "model_config"), "source_model")
        if not isinstance(source.get("algorithm"), str):
            raise ConfigError("source_model.algorithm", f"must be a string, got {source.get('algorithm')!r}")
        if not isinstance(source.get("model_config"), Mapping):
            raise ConfigError(
                "source_model.model_config", f"must be an object, got {source.get('model_config')!r}"
            )
        source = {"algorithm": source["algorithm"], "model_config": dict(source["model_config"])}
    out["source_model"] = source

    target = get_section(config, "target")
    reject_unknown(target, TARGET_KEYS, "target")
    out["target"] = {
        "train_classes": get_int_list(target, "train_classes", minimum=0, prefix="target"),
        "train_groups": get_str_list(target, "train_groups", prefix="target"),
        "examples_per_class": get_int(target, "examples_per_class", 0, minimum=0, prefix="target"),
    }
    if out["target"]["train_classes"] is not None and out["target"]["train_groups"] is not None:
        raise ConfigError("target.train_groups", "give train_classes or train_groups, not both")

    out["steps"] = get_int(config, "steps", 200, minimum=1, maximum=10_000_000)
    out["batch_size"] = get_int(config, "batch_size", 32, minimum=2, maximum=4096)
    out["lr"] = get_float(config, "lr", 1e-3, positive=True, maximum=10.0)
    out["seed"] = get_int(config, "seed", 0, minimum=0, maximum=2**63 - 1)
    device = config.get("device", "auto")
    if not isinstance(device, str) or not (device in DEVICE_CHOICES or device.startswith("cuda:")):
        raise ConfigError(
            "device", f"must be one of {list(DEVICE_CHOICES)} or 'cuda:<index>', got {device!r}"
        )
    out["device"] = device
    out["checkpoint_every"] = get_int(config, "checkpoint_every", 50, minimum=0)

    out["eval_episodes"] = get_int(config, "eval_episodes", 0, minimum=0, maximum=1_000_000)
    out["eval_classes"] = get_int_list(config, "eval_classes", minimum=0)
    out["eval_groups"] = get_str_list(config, "eval_groups")
    out["eval_within_group"] = get_bool(config, "eval_within_group", False)
    out["eval_n_way"] = get_int(config, "eval_n_way", 5, minimum=2, maximum=1000)
    out["eval_k_shot"] = get_int(config, "eval_k_shot", 1, minimum=1, maximum=1000)
    out["eval_query"] = get_int(config, "eval_query", 15, minimum=1, maximum=1000)
    if out["eval_classes"] is not None and out["eval_groups"] is not None:
        raise ConfigError("eval_groups", "give eval_classes or eval_groups, not both")
    if out["eval_episodes"] and out["eval_classes"] is None and out["eval_groups"] is None:
        raise ConfigError(
            "eval_episodes", f"is {out['eval_episodes']} but no eval_classes or eval_groups are given"
        )

    if name in ("scratch", "finetune"):
        out["layers"] = get_choice(config, "layers", "all", ["all", "head"])
        out["head_init"] = get_choice(config, "head_init", "prototypes", ["random", "prototypes"])
    if name == "finetune":
        out["l2sp"] = get_float(config, "l2sp", 0.0, minimum=0.0, maximum=1e6)
        out["l2sp_beta"] = get_float(config, "l2sp_beta", 0.0, minimum=0.0, maximum=1e6)
        if out["l2sp"] > 0 and out["layers"] == "head":
            raise ConfigError("l2sp", "regularizes the backbone toward the source, but layers is 'head'")
    if name == "feature":
        out["head"] = get_choice(config, "head", "logistic", ["logistic", "prototypes"])
        out["weight_decay"] = get_float(config, "weight_decay", 1e-4, minimum=0.0, maximum=1e6)
    if name == "instance":
        out["weighting"] = get_choice(config, "weighting", "domain_classifier", ["domain_classifier", "kmm"])
        out["source_classes"] = get_int_list(config, "source_classes", minimum=0)
        out["source_groups"] = get_str_list(config, "source_groups")
        if out["source_classes"] is not None and out["source_groups"] is not None:
            raise ConfigError("source_groups", "give source_classes or source_groups, not both")
        out["source_batch"] = get_int(config, "source_batch", out["batch_size"], minimum=1, maximum=4096)
        out["max_weight"] = get_float(config, "max_weight", 10.0, positive=True, maximum=1e6)
    if name == "rkd":
        # 25 and 50: the weights RKD is used with next to a cross-entropy task loss (e.g. in
        # RepDistiller); the paper's metric-learning runs, with no task loss, use 1 and 2.
        out["distance_weight"] = get_float(config, "distance_weight", 25.0, minimum=0.0, maximum=1e6)
        out["angle_weight"] = get_float(config, "angle_weight", 50.0, minimum=0.0, maximum=1e6)
        student = get_section(config, "student")
        reject_unknown(student, ("hidden",), "student")
        hidden = student.get("hidden")
        out["student"] = {
            "hidden": None if hidden is None else get_int(student, "hidden", None, minimum=1, maximum=1024)
        }
    return out


# --------------------------------------------------------------------------------------- setup


def _to_tensor(images: np.ndarray, device: torch.device) -> Tensor:
    """Float32 ``(N, 1, H, W)`` in [0, 1] from uint8 ``(N, H, W)`` with ink high."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1).to(device)


@dataclass
class TargetSetup:
    """The target split of a validated config.

    ``train_idx`` ``(M,)`` example indices used for training with labels ``train_y`` ``(M,)``
    in ``0..len(train_classes)-1``; ``heldout_idx`` / ``heldout_y`` the unused examples of the
    same classes (for ``target_accuracy``); ``eval_classes`` the few-shot evaluation classes.
    """

    device: torch.device
    train_classes: list[int]
    train_idx: np.ndarray
    train_y: np.ndarray
    heldout_idx: np.ndarray
    heldout_y: np.ndarray
    eval_classes: list[int]


def _target_setup(config: Mapping[str, Any], data: TransferData) -> TargetSetup:
    if not isinstance(data, TransferData):
        raise ConfigError("domain", f"transfer methods need TransferData, got {type(data).__name__}")
    source = config["source_model"]
    if source is not None:
        if source["algorithm"] != data.source_algorithm:
            raise ConfigError(
                "source_model.algorithm",
                f"is {source['algorithm']!r} but the source weights come from {data.source_algorithm!r}",
            )
        if dict(source["model_config"]) != dict(data.source_model_config):
            raise ConfigError(
                "source_model.model_config",
                f"{source['model_config']} differs from the source weights' {dict(data.source_model_config)}",
            )
    target = data.target
    tcfg = config["target"]
    classes = resolve_classes(target, tcfg["train_classes"], tcfg["train_groups"], "target.train")
    if len(classes) < 2:
        raise ConfigError("target.train_classes", f"needs at least 2 target classes, got {len(classes)}")
    by_class = target.indices_by_class()
    k = tcfg["examples_per_class"]
    train_idx: list[np.ndarray] = []
    held_idx: list[np.ndarray] = []
    for c in classes:
        examples = by_class[c]
        if k and len(examples) < k:
            raise ConfigError(
                "target.examples_per_class",
                f"is {k} but class {target.class_names[c]!r} has {len(examples)} examples",
            )
        cut = k or len(examples)
        train_idx.append(examples[:cut])
        held_idx.append(examples[cut:])
    label_of = {c: i for i, c in enumerate(classes)}
    train = np.concatenate(train_idx)
    held = np.concatenate(held_idx)
    if len(held) > TARGET_EVAL_LIMIT:
        # An even spread over the classes, the same for every method and seed.
        held = held[np.linspace(0, len(held) - 1, TARGET_EVAL_LIMIT).round().astype(np.int64)]
    eval_classes: list[int] = []
    if config["eval_classes"] is not None or config["eval_groups"] is not None:
        eval_classes = resolve_classes(target, config["eval_classes"], config["eval_groups"], "eval")
        overlap = sorted(set(eval_classes) & set(classes))
        if overlap:
            names = [target.class_names[c] for c in overlap[:5]]
            raise ConfigError(
                "eval_classes", f"{len(overlap)} evaluation classes are target training classes, e.g. {names}"
            )
    try:
        device = resolve_device(config["device"])
    except ValueError as exc:
        raise ConfigError("device", str(exc)) from exc
    return TargetSetup(
        device=device,
        train_classes=classes,
        train_idx=train,
        train_y=np.array([label_of[int(c)] for c in target.labels[train]], dtype=np.int64),
        heldout_idx=held,
        heldout_y=np.array([label_of[int(c)] for c in target.labels[held]], dtype=np.int64),
        eval_classes=eval_classes,
    )


def _transfer_model_config(shape: BackboneShape, classes: int, hidden: int | None = None) -> dict[str, Any]:
    return {
        "arch": TRANSFER_ARCH,
        "in_channels": shape.in_channels,
        "image_size": shape.image_size,
        "hidden": hidden if hidden is not None else shape.hidden,
        "layers": shape.layers,
        "classes": classes,
    }


def _batch_indices(seed: int, stream: int, step: int, pool: int, size: int) -> np.ndarray:
    """``min(size, pool)`` distinct positions in ``0..pool-1``; a pure function of seed, stream and step."""
    return episode_rng(seed, stream, step).choice(pool, size=min(size, pool), replace=False)


def _set_prototype_head(head: nn.Linear, feats: Tensor, labels: Tensor, n_classes: int) -> None:
    """Set ``head`` to the nearest-class-mean classifier of features ``(M, D)`` with labels ``(M,)``.

    ``-||f - p||^2 = 2 p.f - ||p||^2 - ||f||^2`` and the last term is the same for every class,
    so weights ``2 p`` and biases ``-||p||^2`` give exactly the prototype classifier's softmax.
    """
    onehot = F.one_hot(labels, n_classes).to(feats.dtype)
    protos = onehot.T @ feats / onehot.sum(0).clamp(min=1.0).unsqueeze(1)
    head.weight.copy_(2.0 * protos)
    head.bias.copy_(-(protos**2).sum(1))


def _classify_batches(model: TransferNet, images: Tensor, batch: int, columns: int) -> np.ndarray:
    """Predicted labels ``(N,)`` (argmax over the first ``columns`` logits), in chunks of ``batch``."""
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            out.append(model(images[start : start + batch])[:, :columns].argmax(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _finalize(
    algorithm: str, config: Mapping[str, Any], setup: TargetSetup, data: TransferData, model: TransferNet
) -> Callable[[], dict[str, float]]:
    """The run's closing measurements: ``target_accuracy`` on the unused examples of the training classes,
    and the few-shot ``eval_accuracy``/``eval_ci95``/``eval_episodes`` when ``eval_episodes`` > 0."""

    def finalize() -> dict[str, float]:
        out: dict[str, float] = {}
        n_classes = len(setup.train_classes)
        was_training = model.training
        model.eval()
        try:
            if len(setup.heldout_idx):
                images = _to_tensor(data.target.images[setup.heldout_idx], setup.device)
                pred = _classify_batches(model, images, config["batch_size"], n_classes)
                out["target_accuracy"] = float((pred == setup.heldout_y).mean())
                out["target_examples"] = float(len(pred))
        finally:
            model.train(was_training)
        if config["eval_episodes"] and setup.eval_classes:
            from learning.engine.evaluation import evaluate_model

            result = evaluate_model(
                algorithm,
                model,
                data.target,
                classes=setup.eval_classes,
                n_way=config["eval_n_way"],
                k_shot=config["eval_k_shot"],
                query=config["eval_query"],
                episodes=config["eval_episodes"],
                within_group=config["eval_within_group"],
                seed=config["seed"],
                device=setup.device,
                strict=False,
            )
            out.update(eval_accuracy=result.mean, eval_ci95=result.ci95, eval_episodes=float(result.episodes))
        return out

    return finalize


def _seen_names(data: TransferData, setup: TargetSetup, extra: Sequence[str] = ()) -> list[str]:
    names = [data.target.class_names[c] for c in setup.train_classes]
    return list(dict.fromkeys([*names, *data.source_class_names, *extra]))


def _run(
    algorithm: str,
    config: Mapping[str, Any],
    data: TransferData,
    setup: TargetSetup,
    model: TransferNet,
    model_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None,
    step_fn: Callable[[int, StopFn], StepOutput],
    total_steps: int,
    examples_per_step: int,
    hooks: tuple[ProgressFn | None, StopFn | None, CheckpointStore | None],
    extra_seen: Sequence[str] = (),
) -> TrainResult:
    on_progress, should_stop, checkpoint = hooks
    # The source weights are data, not config: their digest joins the resume fingerprint so a
    # checkpoint of a run from another source is never resumed onto this one.
    fingerprinted = {**config, "source_weights_sha256": weights_digest(data.source_weights)}
    return run_training(
        algorithm=algorithm,
        config=fingerprinted,
        model=model,
        model_config=model_config,
        optimizer=optimizer,
        step_fn=step_fn,
        total_steps=total_steps,
        examples_per_step=examples_per_step,
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
        finalize=_finalize(algorithm, config, setup, data, model),
        train_class_names=_seen_names(data, setup, extra_seen),
    )


# --------------------------------------------------------------------------------------- methods


def _train_parameter(
    config: dict[str, Any],
    data: TransferData,
    from_source: bool,
    hooks: tuple[ProgressFn | None, StopFn | None, CheckpointStore | None],
) -> TrainResult:
    """``finetune`` (``from_source``) and ``scratch``: cross-entropy on target minibatches."""
    algorithm = "finetune" if from_source else "scratch"
    setup = _target_setup(config, data)
    backbone, shape = source_backbone(data)
    n_classes = len(setup.train_classes)
    model_config = _transfer_model_config(shape, n_classes)
    torch.manual_seed(config["seed"])
    # Built the same way for both, so at one seed scratch and finetune share the head's initialization.
    model = TransferNet(shape.in_channels, shape.hidden, shape.layers, shape.image_size, n_classes)
    if from_source:
        model.backbone.load_state_dict(backbone.state_dict())
    model = model.to(setup.device)
    x_all = _to_tensor(data.target.images[setup.train_idx], setup.device)
    y_all = torch.from_numpy(setup.train_y).to(setup.device)
    batch = config["batch_size"]
    if config["head_init"] == "prototypes":
        # Imprinting (Qi et al., 2018): a head that already classifies by the class means sends
        # small, informative gradients into the transferred layers, where a random head's large
        # ones would first distort them (Kumar et al., 2022).
        with torch.no_grad():
            feats = torch.cat([model.embed(x_all[s : s + batch]) for s in range(0, len(x_all), batch)])
            _set_prototype_head(model.classifier, feats, y_all, n_classes)
    if config["layers"] == "head":
        model.backbone.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config["lr"])
    alpha = config.get("l2sp", 0.0)
    beta = config.get("l2sp_beta", 0.0)
    anchor = [p.detach().clone() for p in model.backbone.parameters()] if alpha > 0 else []

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        idx = torch.from_numpy(_batch_indices(config["seed"], TARGET_STREAM, step, len(y_all), batch))
        x, y = x_all[idx.to(setup.device)], y_all[idx.to(setup.device)]
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        loss = ce
        metrics = {"train_accuracy": float((logits.argmax(-1) == y).float().mean())}
        if alpha > 0:
            # L2-SP: pull the transferred layers toward their source values, not toward zero.
            sp = sum(((p - a) ** 2).sum() for p, a in zip(model.backbone.parameters(), anchor, strict=True))
            loss = loss + 0.5 * alpha * sp
            metrics["l2sp_distance"] = float(sp.detach())
        if beta > 0:
            loss = loss + 0.5 * beta * (model.classifier.weight**2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        metrics["cross_entropy"] = float(ce.detach())
        return StepOutput(loss=float(loss.detach()), metrics=metrics)

    return _run(
        algorithm,
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        config["steps"],
        min(batch, len(y_all)),
        hooks,
    )


def train_scratch(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """The from-scratch baseline: ``finetune``'s training from a fresh init of the source's architecture."""
    return _train_parameter(config, data, False, (on_progress, should_stop, checkpoint))


def train_finetune(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Parameter transfer: fine-tune the source backbone (all layers or head only, optional L2-SP)."""
    return _train_parameter(config, data, True, (on_progress, should_stop, checkpoint))


def train_feature(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Feature-representation transfer: the frozen source backbone, a logistic or prototype head on top."""
    setup = _target_setup(config, data)
    backbone, shape = source_backbone(data)
    n_classes = len(setup.train_classes)
    model_config = _transfer_model_config(shape, n_classes)
    torch.manual_seed(config["seed"])
    model = TransferNet(shape.in_channels, shape.hidden, shape.layers, shape.image_size, n_classes)
    model.backbone.load_state_dict(backbone.state_dict())
    model = model.to(setup.device)
    model.backbone.requires_grad_(False)
    x_all = _to_tensor(data.target.images[setup.train_idx], setup.device)
    y_all = torch.from_numpy(setup.train_y).to(setup.device)
    model.eval()
    with torch.no_grad():
        # Batch-statistics norm: features come from chunks of batch_size, as a training batch would see.
        feats = torch.cat(
            [
                model.embed(x_all[s : s + config["batch_size"]])
                for s in range(0, len(x_all), config["batch_size"])
            ]
        )
    head = model.classifier

    if config["head"] == "prototypes":
        optimizer = None
        total_steps = 1

        def step_fn(step: int, stop: StopFn) -> StepOutput:
            with torch.no_grad():
                _set_prototype_head(head, feats, y_all, n_classes)
                logits = head(feats)
                ce = F.cross_entropy(logits, y_all)
            acc = float((logits.argmax(-1) == y_all).float().mean())
            return StepOutput(loss=float(ce), metrics={"train_accuracy": acc})

    else:
        # Starting from the prototype classifier (rather than a random layer) gives the logistic
        # regression a sensible solution from the first step; the steps then refine it.
        with torch.no_grad():
            _set_prototype_head(head, feats, y_all, n_classes)
        optimizer = torch.optim.Adam(head.parameters(), lr=config["lr"])
        total_steps = config["steps"]
        wd = config["weight_decay"]

        def step_fn(step: int, stop: StopFn) -> StepOutput:
            logits = head(feats)
            ce = F.cross_entropy(logits, y_all)
            loss = ce + 0.5 * wd * (head.weight**2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            acc = float((logits.argmax(-1) == y_all).float().mean())
            return StepOutput(loss=float(loss.detach()), metrics={"train_accuracy": acc})

    return _run(
        "feature",
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        total_steps,
        len(y_all),
        (on_progress, should_stop, checkpoint),
    )


# ----------------------------------------------------------------------- instance weighting


def domain_classifier_weights(
    source_features: np.ndarray, target_features: np.ndarray, *, l2: float = 1.0, max_weight: float = 10.0
) -> np.ndarray:
    """Importance weights ``(Ns,)`` of source examples from a target-vs-source logistic regression.

    Fits ``p(target | x) = sigmoid(w . x + b)`` on standardized features (source ``(Ns, D)``
    labelled 0, target ``(Nt, D)`` labelled 1; L2 penalty ``l2/2 ||w||^2``; L-BFGS from zero,
    so deterministic), then returns the density ratio
    ``p_target(x) / p_source(x) = p(t|x) / p(s|x) * Ns / Nt`` clipped to ``[0, max_weight]``.
    """
    xs = np.asarray(source_features, dtype=np.float64)
    xt = np.asarray(target_features, dtype=np.float64)
    x = np.concatenate([xs, xt])
    mu = x.mean(0)
    sd = x.std(0)
    sd[sd == 0] = 1.0
    x = (x - mu) / sd
    y = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    d = x.shape[1]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        # log(1 + e^z) - y z, written stably.
        loss = float((np.logaddexp(0.0, z) - y * z).sum() + 0.5 * l2 * w @ w)
        r = 1.0 / (1.0 + np.exp(-z)) - y
        return loss, np.r_[x.T @ r + l2 * w, r.sum()]

    fit = optimize.minimize(loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B")
    logit = x[: len(xs)] @ fit.x[:d] + fit.x[d]
    ratio = np.exp(np.clip(logit, -50.0, 50.0)) * len(xs) / len(xt)
    return np.clip(ratio, 0.0, max_weight)


def _project_box_sum(v: np.ndarray, upper: float, low_sum: float, high_sum: float) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{0 <= b <= upper, low_sum <= sum(b) <= high_sum}``."""
    b = np.clip(v, 0.0, upper)
    total = b.sum()
    if low_sum <= total <= high_sum:
        return b
    goal = high_sum if total > high_sum else low_sum
    # The projection is clip(v - lam) for the shift lam that meets the violated bound; the
    # clipped sum falls monotonically in lam, so bisection finds it.
    lo, hi = float(v.min() - upper), float(v.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.clip(v - mid, 0.0, upper).sum() > goal:
            lo = mid
        else:
            hi = mid
    return np.clip(v - 0.5 * (lo + hi), 0.0, upper)


def kmm_weights(
    source_features: np.ndarray,
    target_features: np.ndarray,
    *,
    max_weight: float = 10.0,
    eps: float | None = None,
    sigma: float | None = None,
    iterations: int = 300,
    tol: float = 1e-6,
) -> np.ndarray:
    """Kernel mean matching weights ``(Ns,)`` (Huang et al., 2007): source ``(Ns, D)``, target ``(Nt, D)``.

    Solves ``min_b 1/2 b'Kb - kappa'b`` s.t. ``0 <= b_i <= max_weight``,
    ``|sum(b) - Ns| <= Ns eps`` with the Gaussian kernel ``k(x, x') = exp(-||x - x'||^2 / (2 sigma^2))``,
    ``K`` over source pairs and ``kappa_i = Ns/Nt sum_j k(x_i, t_j)``: the weights that make the
    weighted source mean in the kernel's feature space match the target mean. ``eps`` defaults
    to ``(sqrt(Ns) - 1) / sqrt(Ns)`` (the paper's choice), ``sigma`` to the median distance
    between all points. Solved by accelerated projected gradient (FISTA) from ``b = 1`` for at most
    ``iterations`` steps, stopping once no weight moves by more than ``tol * max_weight``.
    """
    xs = np.asarray(source_features, dtype=np.float64)
    xt = np.asarray(target_features, dtype=np.float64)
    ns, nt = len(xs), len(xt)

    def sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)

    d_ss = sqdist(xs, xs)
    d_st = sqdist(xs, xt)
    if sigma is None:
        both = np.concatenate([d_ss.ravel(), d_st.ravel()])
        # The median of a fixed, evenly strided subset: the same heuristic at a bounded cost.
        both = both[:: max(1, len(both) // 200_000)]
        sigma = float(np.median(np.sqrt(both[both > 0]))) if (both > 0).any() else 1.0
    # float32 halves the cost of the matrix-vector products that dominate the solve; the weights
    # need nowhere near float64 precision.
    k = np.exp(-d_ss / (2.0 * sigma**2)).astype(np.float32)
    kappa = (ns / nt) * np.exp(-d_st / (2.0 * sigma**2)).sum(1)
    if eps is None:
        eps = (np.sqrt(ns) - 1.0) / np.sqrt(ns)
    low, high = ns * (1.0 - eps), ns * (1.0 + eps)
    # The gradient's Lipschitz constant is K's largest eigenvalue; power iteration finds it in
    # O(Ns^2) per round where a full eigendecomposition would cost O(Ns^3). K is non-negative,
    # so starting from the all-ones vector converges to the top eigenvector (Perron-Frobenius);
    # the 1% margin covers the estimate's shortfall.
    v = np.ones(ns) / np.sqrt(ns)
    lipschitz = 1.0
    for _ in range(100):
        kv = (k @ v.astype(np.float32)).astype(np.float64)
        estimate = float(np.linalg.norm(kv))
        v = kv / max(estimate, 1e-300)
        if abs(estimate - lipschitz) <= 1e-6 * estimate:
            break
        lipschitz = estimate
    lipschitz = 1.01 * max(estimate, lipschitz)
    step = 1.0 / max(lipschitz, 1e-12)
    b = _project_box_sum(np.ones(ns), max_weight, low, high)
    z = b.copy()
    t = 1.0
    for _ in range(iterations):
        kz = (k @ z.astype(np.float32)).astype(np.float64)
        b_next = _project_box_sum(z - step * (kz - kappa), max_weight, low, high)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        z = b_next + ((t - 1.0) / t_next) * (b_next - b)
        moved = float(np.abs(b_next - b).max())
        b, t = b_next, t_next
        if moved <= tol * max_weight:
            break
    return b


def train_instance(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Instance transfer: a fresh model on target plus importance-weighted source examples (extra classes)."""
    setup = _target_setup(config, data)
    if data.source_data is None:
        # Not a config setting, but the Django side must supply it: name it as the missing input.
        raise ConfigError(
            "source_data", "instance transfer needs the source examples (TransferData.source_data)"
        )
    source = data.source_data
    if source.images.shape[1:] != data.target.images.shape[1:]:
        raise ConfigError(
            "source_classes",
            f"source images are {source.images.shape[1:]}, target images {data.target.images.shape[1:]}",
        )
    src_classes = resolve_classes(source, config["source_classes"], config["source_groups"], "source")
    if not src_classes:
        raise ConfigError("source_classes", "the source split is empty")
    by_class = source.indices_by_class()
    src_idx = np.concatenate([by_class[c] for c in src_classes])
    src_label = {c: i for i, c in enumerate(src_classes)}
    n_t = len(setup.train_classes)
    src_y = np.array([n_t + src_label[int(c)] for c in source.labels[src_idx]], dtype=np.int64)

    backbone, shape = source_backbone(data)
    batch = config["batch_size"]
    tgt_feats, src_feats = joint_features(
        backbone, data.target.images[setup.train_idx], source.images[src_idx], batch, config["seed"]
    )
    if config["weighting"] == "kmm":
        weights = kmm_weights(src_feats, tgt_feats, max_weight=config["max_weight"])
    else:
        weights = domain_classifier_weights(src_feats, tgt_feats, max_weight=config["max_weight"])

    model_config = _transfer_model_config(shape, n_t + len(src_classes))
    torch.manual_seed(config["seed"])
    model = TransferNet(
        shape.in_channels, shape.hidden, shape.layers, shape.image_size, n_t + len(src_classes)
    )
    model = model.to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    xt_all = _to_tensor(data.target.images[setup.train_idx], setup.device)
    yt_all = torch.from_numpy(setup.train_y).to(setup.device)
    xs_all = _to_tensor(source.images[src_idx], setup.device)
    ys_all = torch.from_numpy(src_y).to(setup.device)
    ws_all = torch.from_numpy(weights.astype(np.float32)).to(setup.device)
    sbatch = config["source_batch"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        it = torch.from_numpy(_batch_indices(config["seed"], TARGET_STREAM, step, len(yt_all), batch))
        js = torch.from_numpy(_batch_indices(config["seed"], SOURCE_STREAM, step, len(ys_all), sbatch))
        it, js = it.to(setup.device), js.to(setup.device)
        # One joint batch: the batch-statistics norm sees source and target together, as the
        # importance-weighted risk mixes them.
        logits = model(torch.cat([xt_all[it], xs_all[js]]))
        ce = F.cross_entropy(logits, torch.cat([yt_all[it], ys_all[js]]), reduction="none")
        w = torch.cat([torch.ones(len(it), device=setup.device), ws_all[js]])
        loss = (w * ce).sum() / w.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        target_acc = float((logits[: len(it), :n_t].argmax(-1) == yt_all[it]).float().mean())
        return StepOutput(
            loss=float(loss.detach()),
            metrics={"train_accuracy": target_acc, "source_weight": float(ws_all[js].mean())},
        )

    result = _run(
        "instance",
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        config["steps"],
        min(batch, len(yt_all)) + min(sbatch, len(ys_all)),
        (on_progress, should_stop, checkpoint),
        extra_seen=[source.class_names[c] for c in src_classes],
    )
    result.metrics["source_weight_mean"] = float(weights.mean())
    result.metrics["source_effective_fraction"] = float(
        weights.sum() ** 2 / max((weights**2).sum(), 1e-300) / len(weights)
    )
    return result


def joint_features(
    backbone: nn.Module, target: np.ndarray, source: np.ndarray, batch: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``((Nt, D), (Ns, D))`` float64 of target and source uint8 images, computed in mixed batches.

    The nets normalize with the statistics of each batch; batches of one domain only would
    each be normalized to the same statistics, erasing the very shift the instance weights must
    measure (it is what AdaBN exploits to *remove* a shift). So both sets are shuffled together
    (a fixed permutation from ``seed``) and embedded in chunks of ``batch``, like the joint
    training batches.
    """
    images = np.concatenate([target, source])
    order = episode_rng(seed, WEIGHT_STREAM, 0).permutation(len(images))
    shuffled = features_of(backbone, images[order], batch_size=batch)
    feats = np.empty_like(shuffled)
    feats[order] = shuffled
    return feats[: len(target)], feats[len(target) :]


# ------------------------------------------------------------------------------------- RKD


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD distance-wise loss (Park et al., 2019) between embeddings ``(B, Ds)`` and ``(B, Dt)``; a scalar.

    Each net's pairwise Euclidean distances are divided by their mean over the distinct
    pairs, then compared with the Huber (smooth L1, delta 1) loss, averaged over all pairs.
    """
    with torch.no_grad():
        t_d = torch.cdist(teacher, teacher)
        t_d = t_d / t_d[t_d > 0].mean()
    s_d = _pairwise_distance(student)
    s_d = s_d / s_d[s_d > 0].mean()
    return F.smooth_l1_loss(s_d, t_d)


def _pairwise_distance(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distances ``(B, B)`` with a zero diagonal and finite gradients at zero distance."""
    sq = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(-1)
    d = sq.clamp(min=eps).sqrt()
    return d * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD angle-wise loss (Park et al., 2019) between embeddings ``(B, Ds)`` and ``(B, Dt)``; a scalar.

    For every triplet ``(i, j, k)`` the cosine of the angle at ``j`` is
    ``<e_ij, e_kj>`` with ``e_ij = (x_i - x_j) / ||x_i - x_j||``; the student's cosines are
    compared with the teacher's by the Huber loss, averaged over the ``B^3`` triplets.
    """
    with torch.no_grad():
        td = F.normalize(teacher.unsqueeze(0) - teacher.unsqueeze(1), p=2, dim=2)
        t_angle = torch.bmm(td, td.transpose(1, 2)).reshape(-1)
    sd = F.normalize(student.unsqueeze(0) - student.unsqueeze(1), p=2, dim=2)
    s_angle = torch.bmm(sd, sd.transpose(1, 2)).reshape(-1)
    return F.smooth_l1_loss(s_angle, t_angle)


def train_rkd(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Relational knowledge transfer: a fresh student, cross-entropy plus RKD-D and RKD-A from the source."""
    setup = _target_setup(config, data)
    teacher, shape = source_backbone(data)
    teacher = teacher.to(setup.device).requires_grad_(False)
    n_classes = len(setup.train_classes)
    hidden = config["student"]["hidden"] or shape.hidden
    model_config = _transfer_model_config(shape, n_classes, hidden)
    torch.manual_seed(config["seed"])
    model = TransferNet(shape.in_channels, hidden, shape.layers, shape.image_size, n_classes).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    x_all = _to_tensor(data.target.images[setup.train_idx], setup.device)
    y_all = torch.from_numpy(setup.train_y).to(setup.device)
    batch = config["batch_size"]
    wd, wa = config["distance_weight"], config["angle_weight"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        idx = torch.from_numpy(_batch_indices(config["seed"], TARGET_STREAM, step, len(y_all), batch))
        idx = idx.to(setup.device)
        x, y = x_all[idx], y_all[idx]
        with torch.no_grad():
            t_emb = teacher(x)
        s_emb = model.embed(x)
        logits = model.classifier(s_emb)
        ce = F.cross_entropy(logits, y)
        dist = rkd_distance_loss(s_emb, t_emb)
        angle = rkd_angle_loss(s_emb, t_emb)
        loss = ce + wd * dist + wa * angle
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return StepOutput(
            loss=float(loss.detach()),
            metrics={
                "train_accuracy": float((logits.argmax(-1) == y).float().mean()),
                "cross_entropy": float(ce.detach()),
                "rkd_distance": float(dist.detach()),
                "rkd_angle": float(angle.detach()),
            },
        )

    return _run(
        "rkd",
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        config["steps"],
        min(batch, len(y_all)),
        (on_progress, should_stop, checkpoint),
    )


# ------------------------------------------------------------------------------------- classify


def classify_transfer(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    adapt: Mapping[str, Any],
    *,
    should_stop: StopFn | None = None,
) -> Tensor:
    """Scores ``(B, Q, N)``: minus squared distances from query features to the support class means.

    ``xs`` ``(B, S, C, H, W)``, ``ys`` ``(B, S)`` in ``0..N-1``, ``xq`` ``(B, Q, C, H, W)``. Support
    and query of an episode are embedded in one batch (the batch-statistics norm sees the
    episode, as in ProtoNet); the classifier head is not used, since the episode's classes are new.
    One forward pass per episode, so ``should_stop`` is not polled.
    """
    n_way = int(ys.max()) + 1
    encode = model.embed if hasattr(model, "embed") else model
    out = []
    for b in range(xs.shape[0]):
        emb = encode(torch.cat([xs[b], xq[b]]))
        support, query = emb[: xs.shape[1]], emb[xs.shape[1] :]
        onehot = F.one_hot(ys[b], n_way).to(support.dtype)
        protos = onehot.T @ support / onehot.sum(0).unsqueeze(1)
        out.append(-((query.unsqueeze(1) - protos.unsqueeze(0)) ** 2).sum(-1))
    return torch.stack(out)


_TRAIN_FNS = {
    "scratch": train_scratch,
    "finetune": train_finetune,
    "feature": train_feature,
    "instance": train_instance,
    "rkd": train_rkd,
}
for _name, _fn in _TRAIN_FNS.items():
    register_algorithm(
        _name,
        _fn,
        validate=validate_transfer_config,
        classify=classify_transfer,
        domain="image",
        data_type=TransferData,
    )

__all__ = [
    "TRANSFER_ALGORITHMS",
    "TRANSFER_ARCH",
    "TransferData",
    "TransferNet",
    "classify_transfer",
    "domain_classifier_weights",
    "kmm_weights",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "source_backbone",
    "train_feature",
    "train_finetune",
    "train_instance",
    "train_rkd",
    "train_scratch",
    "validate_transfer_config",
    "weights_digest",
]
