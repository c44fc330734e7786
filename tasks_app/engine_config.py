"""From catalog entries and user hyperparameters to the engine's config dict.

The engine validates its own settings (``learning.engine.algorithms.validate_config``)
and names the bad field; this module only adds what the catalog decides: the task
shape and which classes are meta-train, from the task spec.
"""

from __future__ import annotations

from typing import Any

from learning.errors import InvalidInput
from learning.models import SourceDomain, TaskSpec
from learning.services.task_specs import split_classes

IMAGE_ALGORITHMS = ("protonet", "maml", "fomaml", "reptile", "siamese")
FUNCTION_ALGORITHMS = ("cnp", "np")

_IMAGE_COMMON = ("steps", "meta_batch", "outer_lr", "seed")
_INNER_LOOP = ("inner_lr", "inner_steps")
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "protonet": _IMAGE_COMMON,
    "siamese": _IMAGE_COMMON,
    "maml": _IMAGE_COMMON + _INNER_LOOP,
    "fomaml": _IMAGE_COMMON + _INNER_LOOP,
    "reptile": _IMAGE_COMMON + _INNER_LOOP,
    "cnp": ("steps", "lr", "seed"),
    "np": ("steps", "lr", "seed"),
}
"""The hyperparameters the launch form offers per algorithm (the API accepts every engine setting)."""

TRANSFER_METHODS = ("finetune", "feature", "instance", "rkd")
"""Transfer methods of the engine; each is compared with ``scratch``, the same training from a fresh init."""
TRANSFER_SHOTS = (1, 5, 10, 20)

# Bounds the site enforces on top of the engine's own, so one form post cannot book a
# worker for days.
MAX_STEPS = 200_000
MAX_META_BATCH = 256
MAX_INNER_STEPS = 50
MIN_EVAL_EPISODES = 600
MAX_EVAL_EPISODES = 20_000


def algorithms_for(domain: SourceDomain) -> tuple[str, ...]:
    return IMAGE_ALGORITHMS if domain.is_image else FUNCTION_ALGORITHMS


def _site_bounds(hyperparameters: dict[str, Any]) -> None:
    for key, high in (("steps", MAX_STEPS), ("meta_batch", MAX_META_BATCH), ("inner_steps", MAX_INNER_STEPS)):
        value = hyperparameters.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= high:
            raise InvalidInput(f"{key} must be between 1 and {high}, got {value}", field=key)
    for key in ("outer_lr", "inner_lr", "lr"):
        value = hyperparameters.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise InvalidInput(f"{key} must be greater than 0, got {value}", field=key)


def engine_config_for(
    *, algorithm: str, hyperparameters: dict[str, Any], domain: SourceDomain, task_spec: TaskSpec | None
) -> dict[str, Any]:
    """The complete engine config of a meta-training run; raises InvalidInput naming the field."""
    if algorithm not in algorithms_for(domain):
        raise InvalidInput(
            f"unknown algorithm {algorithm!r} for {domain.get_modality_display().lower()}; "
            f"choose one of {', '.join(algorithms_for(domain))}",
            field="algorithm",
        )
    if not isinstance(hyperparameters, dict):
        raise InvalidInput("hyperparameters must be an object", field="hyperparameters")
    for reserved in ("algorithm", "domain", "task", "eval_classes", "eval_groups", "eval_episodes"):
        if reserved in hyperparameters:
            raise InvalidInput(f"{reserved!r} is set by the site, not a hyperparameter", field=reserved)
    _site_bounds(hyperparameters)
    config: dict[str, Any] = {"algorithm": algorithm, **hyperparameters}
    if domain.is_image:
        if task_spec is None:
            raise InvalidInput("image domains need a task spec", field="task_spec")
        config["task"] = {
            "n_way": task_spec.n_way,
            "k_shot": task_spec.k_shot,
            "query": task_spec.query_size,
            "within_group": task_spec.within_group,
            "meta_train_classes": split_classes(domain=domain, split=task_spec.split, part="meta_train"),
        }
    # Imported here so that loading the URL conf does not load torch.
    from learning.engine.algorithms import ConfigError, validate_config

    try:
        return validate_config(config)
    except ConfigError as exc:
        field = exc.field.split(".")[-1] if exc.field.startswith(("task.", "model.")) else exc.field
        raise InvalidInput(str(exc), field=field) from exc


def transfer_config_for(
    *,
    method: str,
    hyperparameters: dict[str, Any],
    source_model,
    target_domain: SourceDomain,
    task_spec: TaskSpec,
) -> dict[str, Any]:
    """The complete engine config of a transfer run onto the task spec's meta-train classes of the target."""
    if method not in TRANSFER_METHODS:
        raise InvalidInput(
            f"unknown transfer method {method!r}; choose one of {', '.join(TRANSFER_METHODS)}", field="method"
        )
    if not isinstance(hyperparameters, dict):
        raise InvalidInput("hyperparameters must be an object", field="hyperparameters")
    for reserved in ("algorithm", "domain", "target", "source_model"):
        if reserved in hyperparameters:
            raise InvalidInput(f"{reserved!r} is set by the site, not a hyperparameter", field=reserved)
    _site_bounds(hyperparameters)
    config = {
        "algorithm": method,
        **hyperparameters,
        "target": {
            "train_classes": split_classes(domain=target_domain, split=task_spec.split, part="meta_train")
        },
    }
    from learning.engine.algorithms import ConfigError, validate_config

    try:
        return validate_config(config)
    except ConfigError as exc:
        raise InvalidInput(str(exc), field=exc.field.split(".")[-1]) from exc
