"""Predictions on a user's own few-shot task: adapt a trained model to a support set, then answer queries.

Plain PyTorch (no Django). A :class:`Predictor` is the net rebuilt from a weights file
(:func:`load_predictor`); it answers one task at a time, on CPU, and never changes its
weights (MAML-family adaptation runs on a functional copy of the parameters).

Classification (``arch`` ``conv4`` or ``statistician``; images ``(n, 28, 28)`` uint8, ink high, as
``learning.engine.data`` stores them), with the algorithm's own ``classify``:

- ``protonet``: scores are minus the squared Euclidean distances to the class prototypes
  (support and query embedded in one batch normalized by the support's statistics, as in
  training, so a query's answer does not depend on the other queries sent with it);
- ``maml`` / ``fomaml`` / ``reptile``: ``adapt["inner_steps"]`` SGD steps of
  ``adapt["inner_lr"]`` (the settings saved with the weights) on the support set, then the
  adapted net's logits. The linear head has the ``n_way`` outputs fixed at training, so
  the support set must have exactly that many labels (:attr:`Predictor.fixed_ways`);
- ``siamese``: for each class, the best same-class logit ``w . |e_q - e_s| + b`` over its
  support images (nearest support by the learned similarity); the per-class maxima are
  the scores;
- ``statistician``: minus the KL divergence from the query's context posterior to each
  class's (the nearest set summary). :func:`sample` also draws new images of a class from
  its support images.

Text (``arch`` ``text_mlp``, the ``text`` variants of ``protonet``, ``maml``, ``fomaml`` and
``reptile``) classifies the same way, from embeddings: support and query are ``(n, D)`` float32
rows of the frozen sentence encoder (:func:`learning.engine.text_encoder.embed_texts`), which
the caller computes from the texts.

Long work can be stopped: :func:`classify` and :func:`regress` take ``should_stop`` (a
callable returning a bool, e.g. "the request's deadline passed"), poll it before starting
and between inner SGD steps, and raise :class:`PredictStopped` when it returns True. A
model whose saved ``adapt["inner_steps"]`` is absurd thus stops at the caller's deadline.

Probabilities are ``softmax(scores)`` over the support labels, in float64, so each
row sums to 1 to within rounding. Labels are indices ``0..N-1`` in the order the caller
chose; the caller maps them to names.

Regression (1-D functions, ``x`` and ``y`` floats):

- ``cnp``: the decoder's Gaussian mean and std given the context (the support set);
- ``np``: the predictive distribution is a mixture over ``z ~ q(z | context)``; its mean
  and std are the mixture's moments over ``latent_samples`` draws from a seeded
  generator (the same request always gets the same answer);
- ``maml`` / ``fomaml`` / ``reptile`` / ``pretrain`` on the MLP: the net fine-tuned on the
  support set with the saved ``adapt`` settings; a point prediction, so ``std`` is None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.algorithms import REGISTRY, get_entry
from learning.engine.algorithms.statistician import samples_like
from learning.engine.data import IMAGE_SIZE
from learning.engine.functional import AdaptationStopped, InnerLoop, batched_adapt_predict
from learning.engine.nets import TEXT_ARCH, store_channels_last
from learning.engine.neural_process_nets import NeuralProcess
from learning.engine.statistician_nets import ARCH as STATISTICIAN_ARCH
from learning.engine.weights import load_model

CLASSIFICATION = "classification"
REGRESSION = "regression"
FUNCTION_LEARNERS = ("maml", "fomaml", "reptile", "pretrain")
NEURAL_PROCESSES = ("cnp", "np")
LATENT_SAMPLES = 64
"""Draws of ``z`` for a latent NP's predictive mean and std."""


class PredictError(ValueError):
    """The model cannot answer this request; ``field`` names the input at fault (None: the model)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PredictStopped(Exception):
    """``should_stop()`` returned True: the prediction was abandoned and gives no result."""


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise PredictStopped("the prediction was stopped before it started")


def task_of(model_config: Mapping[str, Any]) -> str:
    """``"classification"`` or ``"regression"`` from the model config's ``arch``; PredictError otherwise."""
    arch = model_config.get("arch")
    if arch in ("conv4", STATISTICIAN_ARCH, TEXT_ARCH):
        return CLASSIFICATION
    if arch in ("mlp", "neural_process"):
        return REGRESSION
    raise PredictError(f"models of architecture {arch!r} cannot make predictions here")


def fixed_ways(model_config: Mapping[str, Any]) -> int | None:
    """How many labels a classifier's support sets must have: its linear head's outputs, or None."""
    if model_config.get("arch") in ("conv4", TEXT_ARCH) and model_config.get("head") == "linear":
        return int(model_config["out_features"])
    return None


@dataclass(frozen=True)
class Predictor:
    """A trained net ready to adapt and predict; build one with :func:`load_predictor`."""

    algorithm: str
    model_config: dict[str, Any]
    model: nn.Module
    task: str

    @property
    def fixed_ways(self) -> int | None:
        """The number of labels a support set must have (MAML-family heads), or None for any number."""
        return fixed_ways(self.model_config)

    @property
    def domain(self) -> str:
        """The kind of inputs it takes: ``image``, ``text`` (embeddings) or ``function``."""
        return domain_of(self.model_config)

    @property
    def has_std(self) -> bool:
        """Whether regression predictions come with a predictive standard deviation."""
        return self.task == REGRESSION and self.algorithm in NEURAL_PROCESSES

    @property
    def adapt(self) -> dict[str, Any]:
        """The saved adaptation settings (``inner_lr``, ``inner_steps``) of MAML-family models."""
        return dict(self.model_config.get("adapt") or {})

    @property
    def shareable(self) -> bool:
        """Whether one net may serve concurrent predictions: not when they adapt it, since
        adaptation runs it through ``torch.func.functional_call``, which puts each request's
        adapted weights into the net for the duration of the call."""
        if self.task == CLASSIFICATION:
            return not get_entry(self.algorithm, self.domain).adapts
        return self.algorithm in NEURAL_PROCESSES


def load_predictor(
    weights: Mapping[str, Tensor], model_config: Mapping[str, Any], algorithm: str
) -> Predictor:
    """The net of ``model_config`` with ``weights``, on CPU in eval mode, checked to be usable.

    Raises :class:`PredictError` when the algorithm cannot predict with this net (an
    unknown algorithm, images of another size, weights that do not fit, missing
    adaptation settings).
    """
    config = dict(model_config)
    task = task_of(config)
    if task == CLASSIFICATION:
        domain = domain_of(config)
        entry = REGISTRY.get((algorithm, domain))
        if entry is None or entry.classify is None:
            raise PredictError(f"algorithm {algorithm!r} cannot classify {domain}s")
        size, channels = config.get("image_size", IMAGE_SIZE), config.get("in_channels", 1)
        if domain == "image" and (size != IMAGE_SIZE or channels != 1):
            raise PredictError(
                f"this model takes {channels}-channel {size}x{size} images; predictions use 1-channel "
                f"{IMAGE_SIZE}x{IMAGE_SIZE} grayscale"
            )
    elif config["arch"] == "neural_process":
        if algorithm not in NEURAL_PROCESSES or config.get("x_dim", 1) != 1 or config.get("y_dim", 1) != 1:
            raise PredictError(f"a {algorithm!r} neural process of 1-D functions was expected")
    elif algorithm not in FUNCTION_LEARNERS or config.get("in_features", 1) != 1:
        raise PredictError(f"algorithm {algorithm!r} on an MLP cannot predict 1-D functions here")
    if algorithm in ("maml", "fomaml", "reptile", "pretrain"):
        adapt = config.get("adapt")
        if not isinstance(adapt, Mapping) or "inner_lr" not in adapt or "inner_steps" not in adapt:
            raise PredictError("the weights do not record the adaptation settings (inner_lr, inner_steps)")
    try:
        model = load_model(weights, config)
    except ValueError as exc:
        raise PredictError(f"the weights do not fit the model config: {exc}") from exc
    for p in model.parameters():
        p.requires_grad_(False)
    predictor = Predictor(algorithm=algorithm, model_config=config, model=model, task=task)
    if task == CLASSIFICATION and predictor.shareable:
        store_channels_last(model)  # it only embeds, and is never trained
    return predictor


def images_to_tensor(images: np.ndarray) -> Tensor:
    """``(n, 28, 28)`` uint8 ink-high images as float32 ``(1, n, 1, 28, 28)`` in [0, 1] (one task)."""
    array = np.asarray(images)
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise PredictError(f"images must be (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {array.shape}")
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / 255.0)
    return x.unsqueeze(1).unsqueeze(0)


def domain_of(model_config: Mapping[str, Any]) -> str:
    """``"text"`` for a model over sentence embeddings, ``"function"`` for a regression model,
    else ``"image"``."""
    if model_config.get("arch") == TEXT_ARCH:
        return "text"
    return "function" if task_of(model_config) == REGRESSION else "image"


def embeddings_to_tensor(embeddings: np.ndarray, dim: int) -> Tensor:
    """``(n, dim)`` finite float embeddings as float32 ``(1, n, dim)`` (one task)."""
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[1] != dim or not np.issubdtype(array.dtype, np.floating):
        raise PredictError(f"embeddings must be (n, {dim}) floats, got {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise PredictError("the embeddings hold a NaN or an infinity")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).unsqueeze(0)


def classify(
    predictor: Predictor,
    support: np.ndarray,
    support_labels: Sequence[int],
    query: np.ndarray,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Probabilities ``(Q, N)`` (float64, rows sum to 1) of each query image for labels ``0..N-1``.

    ``support`` ``(S, 28, 28)`` uint8 with ``support_labels`` (S ints, every label in
    ``0..N-1`` used at least once, N >= 2); ``query`` ``(Q, 28, 28)`` uint8. A text model
    takes embeddings instead: ``support`` ``(S, D)`` and ``query`` ``(Q, D)`` floats. Raises
    :class:`PredictError` for labels that do not fit the model, :class:`PredictStopped`
    when ``should_stop()`` returns True (polled first and between inner steps).
    """
    if predictor.task != CLASSIFICATION:
        raise PredictError("this model predicts functions, not image labels")
    labels = np.asarray(support_labels, dtype=np.int64)
    if labels.ndim != 1 or len(labels) != len(support):
        raise PredictError("one label per support image is needed", field="support_labels")
    n_way = int(labels.max()) + 1 if len(labels) else 0
    if n_way < 2 or set(labels.tolist()) != set(range(n_way)):
        raise PredictError("support labels must cover 0..N-1 with N >= 2", field="support_labels")
    ways = predictor.fixed_ways
    if ways is not None and n_way != ways:
        raise PredictError(
            f"this {predictor.algorithm} model was trained {ways}-way: its head has {ways} outputs, so "
            f"the support set needs exactly {ways} distinct labels, got {n_way}",
            field="support_labels",
        )
    if len(query) == 0:
        raise PredictError("at least one query image is needed", field="query")
    entry = get_entry(predictor.algorithm, predictor.domain)
    assert entry.classify is not None  # checked in load_predictor
    if predictor.domain == "text":
        dim = int(predictor.model_config["in_features"])
        xs, xq = embeddings_to_tensor(support, dim), embeddings_to_tensor(query, dim)
    else:
        xs, xq = images_to_tensor(support), images_to_tensor(query)
    ys = torch.from_numpy(labels).unsqueeze(0)
    _check_stop(should_stop)
    try:
        with torch.no_grad():
            scores = entry.classify(
                predictor.model, xs, ys, xq, predictor.adapt, should_stop=should_stop
            )  # (1, Q, N)
    except AdaptationStopped as exc:
        raise PredictStopped(str(exc)) from exc
    probabilities = torch.softmax(scores[0].double(), dim=-1).numpy()
    if not np.isfinite(probabilities).all():
        raise PredictError("the model's scores are not finite for these images")
    return probabilities


def can_sample(model_config: Mapping[str, Any]) -> bool:
    """Whether the model draws new images of a class from its support images (Neural Statistician)."""
    return model_config.get("arch") == STATISTICIAN_ARCH


def sample(predictor: Predictor, support: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` new images ``(count, 28, 28)`` uint8, ink high, of the one class ``support`` shows.

    ``support`` is ``(S, 28, 28)`` uint8, S >= 1, all of one class. The images are the
    decoder's pixel probabilities scaled to 0..255; the same ``seed`` draws the same images.
    Raises :class:`PredictError` when the model is not generative or the input is empty.
    """
    if not can_sample(predictor.model_config):
        raise PredictError("only Neural Statistician models draw samples")
    if len(support) == 0:
        raise PredictError("at least one support image is needed", field="support")
    if count < 1:
        raise PredictError("ask for at least one sample", field="count")
    pixels = samples_like(predictor.model, images_to_tensor(support)[0], count, seed)
    return (pixels[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def regress(
    predictor: Predictor,
    x_support: Sequence[float] | np.ndarray,
    y_support: Sequence[float] | np.ndarray,
    x_query: Sequence[float] | np.ndarray,
    *,
    latent_samples: int = LATENT_SAMPLES,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(mean (T,), std (T,) or None)`` at ``x_query`` given the support points, float64.

    ``std`` is None for MAML-family learners, whose adapted net gives a point prediction.
    Raises :class:`PredictError` for empty or mismatched inputs, :class:`PredictStopped`
    when ``should_stop()`` returns True (polled first and between inner steps).
    """
    if predictor.task != REGRESSION:
        raise PredictError("this model classifies images, not functions")
    xs, ys, xq = (np.asarray(v, dtype=np.float32).reshape(-1) for v in (x_support, y_support, x_query))
    if len(xs) == 0 or len(xs) != len(ys):
        raise PredictError("the support needs at least one point and as many y as x values", field="support")
    if len(xq) == 0:
        raise PredictError("at least one query x is needed", field="query")
    x_ctx, y_ctx, x_tgt = (torch.from_numpy(a).view(1, -1, 1) for a in (xs, ys, xq))
    model = predictor.model
    _check_stop(should_stop)
    if predictor.algorithm in NEURAL_PROCESSES:
        if not isinstance(model, NeuralProcess):
            raise PredictError(
                f"the weights are not a Neural Process ({type(model).__name__})", field="model"
            )
        eps = None
        if model.uses_latent:
            generator = torch.Generator().manual_seed(seed)
            latent_dim = int(model.config.latent_dim)
            eps = torch.randn(latent_samples, 1, latent_dim, generator=generator)
        with torch.no_grad():
            means, stds = model.predict(x_ctx, y_ctx, x_tgt, eps)  # (S, 1, T, 1)
        means, stds = means[:, 0, :, 0].double(), stds[:, 0, :, 0].double()
        mean = means.mean(0)
        # Moments of the equally weighted mixture over the S draws (S = 1 for a CNP).
        second = (stds**2 + means**2).mean(0)
        std = torch.sqrt(torch.clamp(second - mean**2, min=0.0))
        return mean.numpy(), std.numpy()
    adapt = predictor.adapt
    try:
        inner = InnerLoop(F.mse_loss, float(adapt["inner_lr"]), int(adapt["inner_steps"]))
        pred = batched_adapt_predict(model, x_ctx, y_ctx, x_tgt, inner, should_stop=should_stop)
    except AdaptationStopped as exc:
        raise PredictStopped(str(exc)) from exc
    adapted = pred[0, :, 0].double().numpy()
    if not np.isfinite(adapted).all():
        raise PredictError("the adapted model's predictions are not finite for these points")
    return adapted, None


def is_finite_float32(values: Sequence[float]) -> bool:
    """Whether every value is finite and stays finite as float32 (the engine's precision)."""
    return all(math.isfinite(v) and abs(v) <= float(np.finfo(np.float32).max) for v in values)


__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "PredictError",
    "PredictStopped",
    "Predictor",
    "can_sample",
    "classify",
    "domain_of",
    "embeddings_to_tensor",
    "fixed_ways",
    "images_to_tensor",
    "is_finite_float32",
    "load_predictor",
    "regress",
    "sample",
    "task_of",
]
