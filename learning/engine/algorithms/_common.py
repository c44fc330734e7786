"""Setup shared by the episodic algorithms (MAML, Reptile, ProtoNet, Siamese) on images and text.

Their config is declared in :mod:`learning.engine.algorithms.settings` (images) and
:mod:`learning.engine.algorithms.text` (text); this module turns a validated config and the
data into what training needs: the device, the episode spec, the meta-training classes and
the net's ``model_config`` (a Conv4 for images, a :class:`learning.engine.nets.TextMLP` over
the embeddings for text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from learning.engine.config import ConfigError
from learning.engine.data import EpisodeData, ImageArrays, TextArrays
from learning.engine.device import resolve_device
from learning.engine.episodes import EpisodeError, EpisodeSampler, EpisodeSpec
from learning.engine.nets import TEXT_ARCH


def resolve_classes(
    data: EpisodeData, classes: Sequence[int] | None, groups: Sequence[str] | None, field: str
) -> list[int]:
    """Class indices from explicit ``classes`` or ``groups`` names (None and None: all classes).

    ``field`` is the config path reported in a :class:`ConfigError` (e.g. ``task.meta_train``).
    """
    if classes is not None:
        bad = [c for c in classes if not 0 <= c < data.num_classes]
        if bad:
            raise ConfigError(
                f"{field}_classes", f"class indices {bad} are outside 0..{data.num_classes - 1}"
            )
        return sorted(classes)
    if groups is not None:
        known = set(data.groups)
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise ConfigError(f"{field}_groups", f"unknown groups {unknown}; the data has {sorted(known)}")
        wanted = set(groups)
        return [c for c in range(data.num_classes) if data.class_groups[c] in wanted]
    return list(range(data.num_classes))


@dataclass
class EpisodeSetup:
    """What every episodic algorithm derives from a validated config and the data.

    ``image_size`` is the images' side in pixels (0 for text); ``text_dim`` the embeddings' size
    (0 for images).
    """

    device: torch.device
    spec: EpisodeSpec
    train_classes: list[int]
    image_size: int
    text_dim: int = 0

    def sampler(self, data: EpisodeData, seed: int, spec: EpisodeSpec | None = None) -> EpisodeSampler:
        """The meta-training episode sampler; episode errors become :class:`ConfigError` on ``task.*``."""
        try:
            return EpisodeSampler(data, self.train_classes, spec or self.spec, seed)
        except EpisodeError as exc:
            raise ConfigError(f"task.{exc.field}", str(exc).split(": ", 1)[-1]) from exc

    def model_config(self, config: Mapping[str, Any], **head: Any) -> dict[str, Any]:
        """The ``model_config`` for this data with the given head settings (``head``,
        ``out_features``, ``adapt``): a Conv4, or for text a ``text_mlp`` of ``config["model"]["hidden"]``."""
        if self.text_dim:
            hidden = [int(h) for h in config["model"]["hidden"]]
            return {"arch": TEXT_ARCH, "in_features": self.text_dim, "hidden": hidden, **head}
        return {
            "arch": "conv4",
            "in_channels": 1,
            "image_size": self.image_size,
            "hidden": config["model"]["hidden"],
            "layers": config["model"]["layers"],
            **head,
        }


def episode_setup(config: Mapping[str, Any], data: EpisodeData) -> EpisodeSetup:
    """Resolve device and class splits of a validated image or text config; raises :class:`ConfigError`.

    A text config has no ``rotations`` (text classes are never rotated).
    """
    if isinstance(data, TextArrays):
        image_size, text_dim = 0, data.dim
    elif isinstance(data, ImageArrays):
        if data.images.shape[1] != data.images.shape[2]:
            raise ConfigError("model", f"square images expected, got {data.images.shape[1:]}")
        image_size, text_dim = int(data.images.shape[1]), 0
    else:
        raise ConfigError(
            "domain", f"episodic algorithms need ImageArrays or TextArrays, got {type(data).__name__}"
        )
    task = config["task"]
    train_classes = resolve_classes(
        data, task["meta_train_classes"], task["meta_train_groups"], "task.meta_train"
    )
    if not train_classes:
        raise ConfigError("task.meta_train_classes", "the meta-training split is empty")
    spec = EpisodeSpec(
        n_way=task["n_way"],
        k_shot=task["k_shot"],
        query=task["query"],
        within_group=task["within_group"],
        rotations=config.get("rotations", False),
    )
    return EpisodeSetup(
        device=resolve_device(config["device"]),
        spec=spec,
        train_classes=train_classes,
        image_size=image_size,
        text_dim=text_dim,
    )


def task_chunk(config: Mapping[str, Any], device: torch.device) -> int:
    """Tasks per vmap call: ``config["task_chunk"]``, or for 0 four on CPU / the whole meta-batch on CUDA."""
    if config["task_chunk"]:
        return int(config["task_chunk"])
    # On CPU the activations of a few tasks stay in cache: measured on Conv4-64, 5-way 1-shot
    # 5-query, chunks of 4 ran 1.5x faster than all 32 tasks at once, and each chunk takes
    # well under a second, which bounds the stop latency.
    return int(config["meta_batch"]) if device.type == "cuda" else 4
