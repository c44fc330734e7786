"""Source recommendation: rank KB models for a target domain by cheap transferability scores.

Scores come from the source models' features of a few labeled target examples, in
seconds and before any training: LogME for every model, and LEEP and NCE where the
model has a classifier head. Where transfer gains on the target were already measured,
the ranking's Kendall tau against them says how far the scores can be trusted. A model
whose weights cannot be read or used is left out of the ranking and named in ``skipped``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from learning import selectors
from learning.algorithms import image_models
from learning.artifacts import artifact_read
from learning.errors import InvalidInput
from learning.models import Evaluation, MetaModel, SourceDomain
from learning.predictors import SkippedModel, each_usable, net_load

EXAMPLES_PER_CLASS = 10
MAX_CLASSES = 50
MAX_MODELS = 25


@dataclass
class Recommendation:
    model: MetaModel
    logme: float
    leep: float | None
    nce: float | None
    measured_gain: Evaluation | None
    trained_on_target: bool
    """Trained on the target itself: its score says nothing about transfer, so it ranks last."""


@dataclass
class Ranking:
    target: SourceDomain
    examples: int
    classes: int
    recommendations: list[Recommendation]
    kendall_tau: float | None
    """Rank correlation of LogME with the measured gains, where two or more were measured."""
    skipped: list[SkippedModel]
    """Models left out because their weights could not be read or used, with the reason."""


def _target_sample(target: SourceDomain) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: up to ``EXAMPLES_PER_CLASS`` examples of each of the first ``MAX_CLASSES``."""
    from learning.engine.data import load_image_arrays

    arrays = load_image_arrays(io.BytesIO(artifact_read(target.arrays_file)))
    picked = [idx[:EXAMPLES_PER_CLASS] for idx in arrays.indices_by_class()[:MAX_CLASSES]]
    labels = np.concatenate([np.full(len(idx), c) for c, idx in enumerate(picked)])
    return arrays.images[np.concatenate(picked)], labels


def _scores(
    model: MetaModel, images: np.ndarray, labels: np.ndarray
) -> tuple[float, float | None, float | None]:
    import torch
    from torch import nn

    from learning.engine.transferability import features_of, leep, logme, nce

    net = net_load(model=model)
    score = logme(features_of(net, images), labels)
    head = getattr(net, "classifier", None) or getattr(net, "head", None)
    if not isinstance(head, nn.Linear):
        return score, None, None
    with torch.no_grad():
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        logits = torch.cat([net(x[i : i + 256]) for i in range(0, len(x), 256)]).double()
    probs = torch.softmax(logits, dim=1).numpy()
    return score, leep(probs, labels), nce(probs.argmax(axis=1), labels)


def recommend_sources(*, user, target: SourceDomain, shots: int = 5) -> Ranking:
    """Rank the image models ``user`` may see for ``target``, best LogME first (models
    meta-trained on ``target`` itself after the others).

    Raises :class:`InvalidInput` for a target that is not an image domain: the scores
    need images the source models can embed.
    """
    from learning.engine.transferability import kendall_tau

    if target.modality != SourceDomain.Modality.IMAGE_CLASSIFICATION:
        raise InvalidInput(
            f"{target.name} is a {target.get_modality_display().lower()} domain; sources are ranked "
            "for image domains only",
            field="domain",
        )
    images, labels = _target_sample(target)
    models = image_models(selectors.metamodel_list(user=user))[:MAX_MODELS]
    matrix = selectors.transfer_matrix(user=user, shots=shots)
    measured = {source_id: e for (source_id, domain_id), e in matrix.cells.items() if domain_id == target.pk}

    def recommend(model: MetaModel) -> Recommendation:
        return Recommendation(
            model,
            *_scores(model, images, labels),
            measured_gain=measured.get(model.pk),
            trained_on_target=any(d.pk == target.pk for d in model.trained_on.all()),
        )

    recommendations, skipped = each_usable(models, recommend)
    recommendations.sort(key=lambda r: (r.trained_on_target, -r.logme))
    pairs = [(r.logme, r.measured_gain.gain) for r in recommendations if r.measured_gain is not None]
    tau = kendall_tau([p for p, _ in pairs], [m for _, m in pairs]) if len(pairs) >= 2 else None
    return Ranking(target, len(labels), int(labels.max()) + 1, recommendations, tau, skipped)
