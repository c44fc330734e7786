"""The site's view of the engine's algorithm registry, the one list of algorithms and their settings.

Forms, the API, its schema and the catalog read which algorithms exist, what they are
called and which settings they take from here; the engine's registry
(:mod:`learning.engine.algorithms`) is the only place that lists them.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from learning.engine.algorithms import REGISTRY, AlgorithmEntry, offered
from learning.engine.params import FormParam, form_params, json_schema
from learning.models import MetaModel

SITE_SET = {
    "meta_train": ("algorithm", "domain", "task"),
    "transfer": ("algorithm", "domain", "target", "source_model"),
}
"""Settings the site fills from the catalog (the task spec, the target split), never a user."""


def meta_train_algorithms(domain: str | None = None) -> list[AlgorithmEntry]:
    """The algorithms the site meta-trains on domains of the engine's kind ``domain`` (``image``,
    ``text`` or ``function``, as ``SourceDomain.engine_domain`` names them; None: all)."""
    return offered("meta_train", domain)


def transfer_methods() -> list[AlgorithmEntry]:
    """The transfer methods the site runs (each compared with the ``scratch`` baseline)."""
    return offered("transfer")


def image_model_algorithms() -> tuple[str, ...]:
    """Algorithms with models that are Conv4 image backbones: those that transfer and can be scored."""
    return tuple(dict.fromkeys(e.name for e in _image_entries()))


def image_models(models: QuerySet[MetaModel]) -> QuerySet[MetaModel]:
    """The image-backbone models among ``models``: the algorithm and the architecture must both be
    an image one, since a name like ``maml`` also trains MLPs on functions."""
    return models.filter(algorithm__in=image_model_algorithms(), architecture__in=_image_archs())


def is_image_model(model: MetaModel) -> bool:
    """Whether ``model`` has an image backbone (see :func:`image_models`)."""
    return model.algorithm in image_model_algorithms() and model.architecture in _image_archs()


def _image_entries() -> list[AlgorithmEntry]:
    return [e for e in REGISTRY.values() if e.domain == "image" and e.classify]


def _image_archs() -> set[str]:
    return {e.model["arch"] for e in _image_entries()}


def form_settings(entry: AlgorithmEntry) -> list[FormParam]:
    """The settings of ``entry`` that the launch form offers."""
    return [p for p in form_params(entry.config) if p.name not in SITE_SET[_kind(entry)]]


def hyperparameters_schema(entry: AlgorithmEntry) -> dict[str, Any]:
    """The JSON schema of the ``hyperparameters`` a job of ``entry`` accepts."""
    schema = json_schema(entry.config, exclude=SITE_SET[_kind(entry)])
    return {**schema, "title": entry.name, "description": entry.label}


def _kind(entry: AlgorithmEntry) -> str:
    return "transfer" if entry.kind in ("transfer", "baseline") else "meta_train"
