"""From catalog entries and user hyperparameters to the engine's config dict.

Every setting, its default and its bounds are declared once, in the engine's config
dataclasses; the engine validates and names the bad field. This module only adds what the
catalog decides: the task shape and which classes are meta-train, from the task spec.
"""

from __future__ import annotations

from typing import Any

from learning.algorithms import SITE_SET, meta_train_algorithms, transfer_methods
from learning.engine.algorithms import ConfigError, validate_config
from learning.errors import InvalidInput
from learning.models import MetaModel, SourceDomain, TaskSpec
from learning.services.task_specs import split_classes

TRANSFER_SHOTS = (1, 5, 10, 20)
"""Shot counts at which a transfer is compared with its baseline (those the target can supply)."""
MIN_EVAL_EPISODES = 600
MAX_EVAL_EPISODES = 20_000


def _check(hyperparameters: Any, reserved: tuple[str, ...]) -> None:
    if not isinstance(hyperparameters, dict):
        raise InvalidInput("hyperparameters must be an object", field="hyperparameters")
    for key in reserved:
        if key in hyperparameters:
            raise InvalidInput(f"{key!r} is set by the site, not a hyperparameter", field=key)


def _validated(config: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_config(config)
    except ConfigError as exc:
        # Forms show task.* and target.* errors on their own fields (n_way, train_classes).
        nested = exc.field.startswith(("task.", "model.", "target."))
        raise InvalidInput(str(exc), field=exc.field.split(".")[-1] if nested else exc.field) from exc


def engine_config_for(
    *, algorithm: str, hyperparameters: dict[str, Any], domain: SourceDomain, task_spec: TaskSpec | None
) -> dict[str, Any]:
    """The complete engine config of a meta-training run; raises InvalidInput naming the field."""
    offered = [entry.name for entry in meta_train_algorithms(domain.engine_domain)]
    if algorithm not in offered:
        raise InvalidInput(
            f"unknown algorithm {algorithm!r} for {domain.get_modality_display().lower()}; "
            f"choose one of {', '.join(offered)}",
            field="algorithm",
        )
    _check(hyperparameters, SITE_SET["meta_train"])
    # The domain's kind picks the variant of a name that has two (maml on images or functions).
    config: dict[str, Any] = {
        "algorithm": algorithm,
        **hyperparameters,
        "domain": domain.engine_domain,
    }
    if domain.is_classification:
        if task_spec is None:
            raise InvalidInput(f"{domain.engine_domain} domains need a task spec", field="task_spec")
        config["task"] = {
            "n_way": task_spec.n_way,
            "k_shot": task_spec.k_shot,
            "query": task_spec.query_size,
            "within_group": task_spec.within_group,
            "meta_train_classes": split_classes(domain=domain, split=task_spec.split, part="meta_train"),
        }
    return _validated(config)


def transfer_config_for(
    *,
    method: str,
    hyperparameters: dict[str, Any],
    source_model: MetaModel,
    target_domain: SourceDomain,
    task_spec: TaskSpec,
) -> dict[str, Any]:
    """The complete engine config of a transfer run onto the task spec's meta-train classes of the target."""
    offered = [entry.name for entry in transfer_methods(target_domain.engine_domain)]
    if method not in offered:
        raise InvalidInput(
            f"unknown transfer method {method!r}; choose one of {', '.join(offered)}", field="method"
        )
    _check(hyperparameters, SITE_SET["transfer"])
    config = {
        "algorithm": method,
        **hyperparameters,
        "domain": target_domain.engine_domain,
        "target": {
            "train_classes": split_classes(domain=target_domain, split=task_spec.split, part="meta_train")
        },
    }
    return _validated(config)
