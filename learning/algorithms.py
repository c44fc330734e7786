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


def transfer_methods(domain: str | None = None) -> list[AlgorithmEntry]:
    """The transfer methods the site runs (each compared with the ``scratch`` baseline) onto targets
    of the engine's kind ``domain`` (``image`` or ``text``; None: all)."""
    return offered("transfer", domain)


def classifier_models(models: QuerySet[MetaModel], domain: str) -> QuerySet[MetaModel]:
    """The classifiers of ``domain`` data (``image`` or ``text``) among ``models``: the algorithm and
    the architecture must both be one of that domain, since a name like ``maml`` trains several nets."""
    entries = _classifier_entries(domain)
    return models.filter(
        algorithm__in={e.name for e in entries}, architecture__in={e.model["arch"] for e in entries}
    )


def transferable_models(models: QuerySet[MetaModel]) -> QuerySet[MetaModel]:
    """The models among ``models`` with a backbone to transfer: image and text classifiers."""
    return classifier_models(models, "image") | classifier_models(models, "text")


def model_domain(model: MetaModel) -> str | None:
    """``image`` or ``text`` for a model that classifies that kind of data, else None."""
    for domain in ("image", "text"):
        entries = _classifier_entries(domain)
        if model.algorithm in {e.name for e in entries} and model.architecture in {
            e.model["arch"] for e in entries
        }:
            return domain
    return None


def _classifier_entries(domain: str) -> list[AlgorithmEntry]:
    return [e for e in REGISTRY.values() if e.domain == domain and e.classify and "arch" in e.model]


def form_settings(entry: AlgorithmEntry) -> list[FormParam]:
    """The settings of ``entry`` that the launch form offers."""
    return [p for p in form_params(entry.config) if p.name not in SITE_SET[_kind(entry)]]


def hyperparameters_schema(entry: AlgorithmEntry) -> dict[str, Any]:
    """The JSON schema of the ``hyperparameters`` a job of ``entry`` accepts."""
    schema = json_schema(entry.config, exclude=SITE_SET[_kind(entry)])
    return {**schema, "title": entry.name, "description": entry.label}


def _kind(entry: AlgorithmEntry) -> str:
    return "transfer" if entry.kind in ("transfer", "baseline") else "meta_train"
