"""Source recommendation: rank KB models for a target domain by cheap transferability scores.

Scores come from the source models' features of a few labeled target examples (images, or
a text domain's sentence embeddings, for models of the same kind), in
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
from learning.algorithms import classifier_models
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
    """``(examples, labels)``: up to ``EXAMPLES_PER_CLASS`` examples of each of the first
    ``MAX_CLASSES``, images ``(M, H, W)`` uint8 or, for a text domain, embeddings ``(M, D)`` float32."""
    from learning.engine.data import load_image_arrays, load_text_arrays

    blob = io.BytesIO(artifact_read(target.arrays_file))
    arrays = load_text_arrays(blob) if target.is_text else load_image_arrays(blob)
    picked = [idx[:EXAMPLES_PER_CLASS] for idx in arrays.indices_by_class()[:MAX_CLASSES]]
    labels = np.concatenate([np.full(len(idx), c) for c, idx in enumerate(picked)])
    examples = arrays.embeddings if target.is_text else arrays.images
    return examples[np.concatenate(picked)], labels


def _scores(
    model: MetaModel, examples: np.ndarray, labels: np.ndarray
) -> tuple[float, float | None, float | None]:
    from scipy.special import softmax
    from torch import nn

    from learning.engine.transferability import features_of, leep, logme, nce, outputs_of

    net = net_load(model=model)
    score = logme(features_of(net, examples), labels)
    head = getattr(net, "classifier", None) or getattr(net, "head", None)
    if not isinstance(head, nn.Linear):
        return score, None, None
    probs = softmax(outputs_of(net, examples), axis=1)
    return score, leep(probs, labels), nce(probs.argmax(axis=1), labels)


def recommend_sources(*, user, target: SourceDomain, shots: int = 5) -> Ranking:
    """Rank the models ``user`` may see of the target's kind (image or text classifiers) for
    ``target``, best LogME first (models meta-trained on ``target`` itself after the others).

    Raises :class:`InvalidInput` for a function domain: the scores need labeled examples
    the source models can embed.
    """
    from learning.engine.transferability import kendall_tau

    if not target.is_classification:
        raise InvalidInput(
            f"{target.name} is a {target.get_modality_display().lower()} domain; sources are ranked "
            "for image and text domains only",
            field="domain",
        )
    examples, labels = _target_sample(target)
    models = classifier_models(selectors.metamodel_list(user=user), target.engine_domain)[:MAX_MODELS]
    matrix = selectors.transfer_matrix(user=user, shots=shots)
    measured = {source_id: e for (source_id, domain_id), e in matrix.cells.items() if domain_id == target.pk}

    def recommend(model: MetaModel) -> Recommendation:
        return Recommendation(
            model,
            *_scores(model, examples, labels),
            measured_gain=measured.get(model.pk),
            trained_on_target=any(d.pk == target.pk for d in model.trained_on.all()),
        )

    recommendations, skipped = each_usable(models, recommend)
    recommendations.sort(key=lambda r: (r.trained_on_target, -r.logme))
    pairs = [(r.logme, r.measured_gain.gain) for r in recommendations if r.measured_gain is not None]
    tau = kendall_tau([p for p, _ in pairs], [m for _, m in pairs]) if len(pairs) >= 2 else None
    return Ranking(target, len(labels), int(labels.max()) + 1, recommendations, tau, skipped)
