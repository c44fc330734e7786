"""Config validation and setup shared by the image-domain algorithms (MAML, Reptile, ProtoNet, Siamese).

The image config (every key optional except ``algorithm``; defaults differ per algorithm)::

    {
      "algorithm": "maml", "domain": "image",
      "model": {"arch": "conv4", "hidden": 64, "layers": 4},
      "task": {"n_way": 5, "k_shot": 1, "query": 5, "within_group": false,
               "meta_train_classes": null,      # class indices, or
               "meta_train_groups": null},      # group names (e.g. alphabets); neither: all classes
      "steps": 1000, "meta_batch": 32, "outer_lr": 0.001, "seed": 0, "device": "auto",
      "checkpoint_every": 100, "rotations": true,
      "inner_lr": 0.4, "inner_steps": 1, "task_chunk": 0,          # MAML family and Reptile
      "eval_inner_lr": 0.4, "eval_inner_steps": 1,                # adaptation at evaluation
      "eval_episodes": 0, "eval_classes": null, "eval_groups": null, "eval_within_group": false
    }

``task_chunk`` is how many tasks one vmap call adapts; a stop request is honoured
between chunks, so on CPU small chunks keep the stop latency under a second. 0 (the
default) means 4 on CPU and the whole meta-batch on CUDA.

``eval_episodes > 0`` with eval classes (or groups) runs :func:`evaluate_model` on them
after training; they must be disjoint from the meta-training classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

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
from learning.engine.episodes import EpisodeError, EpisodeSampler, EpisodeSpec

COMMON_KEYS = (
    "algorithm",
    "domain",
    "model",
    "task",
    "steps",
    "meta_batch",
    "outer_lr",
    "seed",
    "device",
    "checkpoint_every",
    "rotations",
    "eval_episodes",
    "eval_classes",
    "eval_groups",
    "eval_within_group",
)
INNER_KEYS = ("inner_lr", "inner_steps", "task_chunk", "eval_inner_lr", "eval_inner_steps")
MODEL_KEYS = ("arch", "hidden", "layers")
TASK_KEYS = ("n_way", "k_shot", "query", "within_group", "meta_train_classes", "meta_train_groups")


def validate_image_config(
    config: Mapping[str, Any], defaults: Mapping[str, Any], *, inner_loop: bool
) -> dict[str, Any]:
    """A complete image config from ``config`` and the algorithm's ``defaults``; raises :class:`ConfigError`.

    ``defaults`` holds ``steps``, ``meta_batch``, ``outer_lr``, ``query`` and, when
    ``inner_loop``, ``inner_lr`` and ``inner_steps`` (and optionally ``task_chunk``).
    """
    reject_unknown(config, COMMON_KEYS + (INNER_KEYS if inner_loop else ()))
    out: dict[str, Any] = {"algorithm": config["algorithm"], "domain": config.get("domain", "image")}
    if out["domain"] != "image":
        raise ConfigError(
            "domain", f"{config['algorithm']!r} here trains on images, got domain {out['domain']!r}"
        )

    model = get_section(config, "model")
    reject_unknown(model, MODEL_KEYS, "model")
    out["model"] = {
        "arch": get_choice(model, "arch", "conv4", ["conv4"], prefix="model"),
        "hidden": get_int(model, "hidden", 64, minimum=1, maximum=1024, prefix="model"),
        "layers": get_int(model, "layers", 4, minimum=1, maximum=6, prefix="model"),
    }

    task = get_section(config, "task")
    reject_unknown(task, TASK_KEYS, "task")
    out["task"] = {
        "n_way": get_int(task, "n_way", 5, minimum=2, maximum=1000, prefix="task"),
        "k_shot": get_int(task, "k_shot", 1, minimum=1, maximum=1000, prefix="task"),
        "query": get_int(task, "query", defaults["query"], minimum=1, maximum=1000, prefix="task"),
        "within_group": get_bool(task, "within_group", False, prefix="task"),
        "meta_train_classes": get_int_list(task, "meta_train_classes", minimum=0, prefix="task"),
        "meta_train_groups": get_str_list(task, "meta_train_groups", prefix="task"),
    }
    if out["task"]["meta_train_classes"] is not None and out["task"]["meta_train_groups"] is not None:
        raise ConfigError("task.meta_train_groups", "give meta_train_classes or meta_train_groups, not both")

    out["steps"] = get_int(config, "steps", defaults["steps"], minimum=1, maximum=10_000_000)
    out["meta_batch"] = get_int(config, "meta_batch", defaults["meta_batch"], minimum=1, maximum=4096)
    out["outer_lr"] = get_float(config, "outer_lr", defaults["outer_lr"], positive=True, maximum=100.0)
    out["seed"] = get_int(config, "seed", 0, minimum=0, maximum=2**63 - 1)
    out["device"] = _device(config)
    out["checkpoint_every"] = get_int(config, "checkpoint_every", 100, minimum=0)
    out["rotations"] = get_bool(config, "rotations", True)
    if inner_loop:
        out["inner_lr"] = get_float(config, "inner_lr", defaults["inner_lr"], positive=True, maximum=100.0)
        out["inner_steps"] = get_int(config, "inner_steps", defaults["inner_steps"], minimum=1, maximum=1000)
        out["task_chunk"] = get_int(config, "task_chunk", 0, minimum=0)
        out["eval_inner_lr"] = get_float(
            config,
            "eval_inner_lr",
            defaults.get("eval_inner_lr", out["inner_lr"]),
            positive=True,
            maximum=100.0,
        )
        out["eval_inner_steps"] = get_int(
            config,
            "eval_inner_steps",
            defaults.get("eval_inner_steps", out["inner_steps"]),
            minimum=1,
            maximum=1000,
        )
    out["eval_episodes"] = get_int(config, "eval_episodes", 0, minimum=0, maximum=1_000_000)
    out["eval_classes"] = get_int_list(config, "eval_classes", minimum=0)
    out["eval_groups"] = get_str_list(config, "eval_groups")
    out["eval_within_group"] = get_bool(config, "eval_within_group", False)
    if out["eval_classes"] is not None and out["eval_groups"] is not None:
        raise ConfigError("eval_groups", "give eval_classes or eval_groups, not both")
    if out["eval_episodes"] and out["eval_classes"] is None and out["eval_groups"] is None:
        raise ConfigError(
            "eval_episodes", f"is {out['eval_episodes']} but no eval_classes or eval_groups are given"
        )
    return out


def _device(config: Mapping[str, Any]) -> str:
    value = config.get("device", "auto")
    if not isinstance(value, str) or not (value in DEVICE_CHOICES or value.startswith("cuda:")):
        raise ConfigError("device", f"must be one of {list(DEVICE_CHOICES)} or 'cuda:<index>', got {value!r}")
    return value


def resolve_classes(
    data: ImageArrays, classes: Sequence[int] | None, groups: Sequence[str] | None, field: str
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
class ImageSetup:
    """What every image algorithm derives from a validated config and the data."""

    device: torch.device
    spec: EpisodeSpec
    train_classes: list[int]
    eval_classes: list[int]
    image_size: int

    def sampler(self, data: ImageArrays, seed: int, spec: EpisodeSpec | None = None) -> EpisodeSampler:
        """The meta-training episode sampler; episode errors become :class:`ConfigError` on ``task.*``."""
        try:
            return EpisodeSampler(data, self.train_classes, spec or self.spec, seed)
        except EpisodeError as exc:
            raise ConfigError(f"task.{exc.field}", str(exc).split(": ", 1)[-1]) from exc

    def model_config(self, config: Mapping[str, Any], **head: Any) -> dict[str, Any]:
        """The conv4 ``model_config`` for this data with the given head settings."""
        return {
            "arch": "conv4",
            "in_channels": 1,
            "image_size": self.image_size,
            "hidden": config["model"]["hidden"],
            "layers": config["model"]["layers"],
            **head,
        }


def image_setup(config: Mapping[str, Any], data: ImageArrays) -> ImageSetup:
    """Resolve device and class splits of a validated image config; raises :class:`ConfigError`."""
    if not isinstance(data, ImageArrays):
        raise ConfigError("domain", f"image algorithms need ImageArrays, got {type(data).__name__}")
    if data.images.shape[1] != data.images.shape[2]:
        raise ConfigError("model", f"square images expected, got {data.images.shape[1:]}")
    task = config["task"]
    train_classes = resolve_classes(
        data, task["meta_train_classes"], task["meta_train_groups"], "task.meta_train"
    )
    if not train_classes:
        raise ConfigError("task.meta_train_classes", "the meta-training split is empty")
    eval_classes: list[int] = []
    if config["eval_classes"] is not None or config["eval_groups"] is not None:
        eval_classes = resolve_classes(data, config["eval_classes"], config["eval_groups"], "eval")
        overlap = sorted(set(eval_classes) & set(train_classes))
        if overlap:
            names = [data.class_names[c] for c in overlap[:5]]
            raise ConfigError(
                "eval_classes",
                f"{len(overlap)} evaluation classes are also meta-training classes, e.g. {names}",
            )
    spec = EpisodeSpec(
        n_way=task["n_way"],
        k_shot=task["k_shot"],
        query=task["query"],
        within_group=task["within_group"],
        rotations=config["rotations"],
    )
    return ImageSetup(
        device=resolve_device(config["device"]),
        spec=spec,
        train_classes=train_classes,
        eval_classes=eval_classes,
        image_size=int(data.images.shape[1]),
    )


def task_chunk(config: Mapping[str, Any], device: torch.device) -> int:
    """Tasks per vmap call: ``config["task_chunk"]``, or for 0 four on CPU / the whole meta-batch on CUDA."""
    if config["task_chunk"]:
        return int(config["task_chunk"])
    # On CPU the activations of a few tasks stay in cache: measured on Conv4-64, 5-way 1-shot
    # 5-query, chunks of 4 ran 1.5x faster than all 32 tasks at once, and each chunk takes
    # well under a second, which bounds the stop latency.
    return int(config["meta_batch"]) if device.type == "cuda" else 4


def final_evaluation(
    algorithm: str,
    config: Mapping[str, Any],
    setup: ImageSetup,
    data: ImageArrays,
    model: torch.nn.Module,
    adapt: Mapping[str, Any],
) -> dict[str, float]:
    """``eval_accuracy``, ``eval_ci95`` and ``eval_episodes`` on the eval classes ({} when none asked)."""
    if not config["eval_episodes"] or not setup.eval_classes:
        return {}
    from learning.engine.evaluation import evaluate_model

    task = config["task"]
    result = evaluate_model(
        algorithm,
        model,
        data,
        classes=setup.eval_classes,
        n_way=task["n_way"],
        k_shot=task["k_shot"],
        query=task["query"],
        episodes=config["eval_episodes"],
        within_group=config["eval_within_group"],
        seed=config["seed"],
        adapt=adapt,
        device=setup.device,
        strict=False,
    )
    return {"eval_accuracy": result.mean, "eval_ci95": result.ci95, "eval_episodes": float(result.episodes)}
