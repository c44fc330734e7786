"""N-way K-shot Q-query episodes (and verification pairs) over an :class:`ImageArrays` domain
or an embedded text domain (:class:`TextArrays`).

An episode draws ``n_way`` classes from the allowed class indices, then ``k_shot``
support and ``query`` query examples of each (without replacement). Labels ``0..N-1``
follow the random order in which the classes were drawn.

- **Inputs**: images become float32 ``(1, H, W)`` in [0, 1] with ink high; text examples are
  their embedding rows, float32 ``(D,)``. Everything else (classes, groups, determinism) is
  the same for both kinds.
- **Rotations** (``rotations=True``, meta-training on images only): every class also appears
  turned by 90, 180 and 270 degrees as three further classes (Santoro et al., 2016), so
  ``C`` allowed classes give ``4C`` episode classes. A rotated class keeps its group but
  forms its own *rotation group* for within-group episodes (an episode of one alphabet
  is all upright or all turned the same way, like a real alphabet).
- **Within-group** (``within_group=True``): all N classes of an episode come from one
  group (e.g. one Omniglot alphabet), chosen uniformly among the groups that have at
  least N classes; smaller groups are skipped.
- **Determinism**: episode ``i`` of a sampler is a pure function of the data, the
  allowed classes, the spec, ``seed``, ``stream`` and ``i``: it is drawn from a fresh
  ``numpy.random.Generator(PCG64(SeedSequence([seed, stream, i])))``. No global RNG is
  touched, any episode can be drawn again without drawing the ones before it (resume),
  and two evaluations with the same spec and seed see identical episodes.

Impossible requests raise :class:`EpisodeError` naming the numbers involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from learning.engine.config import ConfigError
from learning.engine.data import EpisodeData, TextArrays
from learning.engine.functional import TaskBatch


class EpisodeError(ConfigError):
    """An episode request that the data cannot satisfy; ``field`` is the spec field at fault
    (``n_way``, ``k_shot``, ``query``, ``classes``, ``within_group`` or ``rotations``)."""


@dataclass(frozen=True)
class EpisodeSpec:
    """The shape of an episode: ``n_way`` classes, ``k_shot`` support and ``query`` query examples each."""

    n_way: int
    k_shot: int
    query: int
    within_group: bool = False
    rotations: bool = False

    def __post_init__(self) -> None:
        for name, minimum in (("n_way", 1), ("k_shot", 1), ("query", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise EpisodeError(name, f"must be an integer >= {minimum}, got {value!r}")


class Episode(NamedTuple):
    """One episode; images are float32 in [0, 1] with ink high, shape ``(n, 1, 28, 28)``; text
    examples are embeddings, float32 ``(n, D)``."""

    x_support: Tensor
    """``(N*K, 1, H, W)`` (text: ``(N*K, D)``), class-major (the K examples of label 0 first)."""
    y_support: Tensor
    """``(N*K,)`` int64 labels in ``0..N-1``."""
    x_query: Tensor
    """``(N*Q, 1, H, W)`` (text: ``(N*Q, D)``), class-major."""
    y_query: Tensor
    """``(N*Q,)`` int64."""
    classes: np.ndarray
    """``(N,)`` data class index of each label."""
    rotations: np.ndarray
    """``(N,)`` quarter turns (0..3) applied to each label's images."""


def episode_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of draw ``index`` in ``stream`` for ``seed`` (PCG64 from a SeedSequence)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, index])))


class _ClassPool:
    """The episode classes (data class, quarter turns) allowed for a sampler, and their examples."""

    def __init__(
        self,
        data: EpisodeData,
        classes: Sequence[int],
        *,
        rotations: bool,
        min_examples: int,
        need: str = "k_shot + query",
        need_field: str = "k_shot",
    ) -> None:
        class_list = [int(c) for c in classes]
        if not class_list:
            raise EpisodeError("classes", "the class split is empty: no class is allowed for these episodes")
        if len(set(class_list)) != len(class_list):
            raise EpisodeError("classes", "the class split lists a class more than once")
        if rotations and isinstance(data, TextArrays):
            raise EpisodeError("rotations", "rotations are for images; text domains have none")
        for c in class_list:
            if not 0 <= c < data.num_classes:
                raise EpisodeError("classes", f"class index {c} is outside 0..{data.num_classes - 1}")
        by_class = data.indices_by_class()
        counts = {c: len(by_class[c]) for c in class_list}
        worst = min(class_list, key=lambda c: (counts[c], c))
        if counts[worst] < min_examples:
            raise EpisodeError(
                need_field,
                f"{need} = {min_examples} exceeds the {counts[worst]} examples of class "
                f"{data.class_names[worst]!r} (index {worst})",
            )
        turns = (0, 1, 2, 3) if rotations else (0,)
        self.data = data
        self.examples = by_class
        self.classes = np.array([c for c in class_list for _ in turns], dtype=np.int64)
        self.turns = np.array([t for _ in class_list for t in turns], dtype=np.int64)
        group_of = [(data.class_groups[c], t) for c, t in zip(self.classes, self.turns, strict=True)]
        keys = sorted(set(group_of))
        self.group_keys = keys
        self.group_members = [
            np.array([i for i, g in enumerate(group_of) if g == k], dtype=np.int64) for k in keys
        ]

    @property
    def size(self) -> int:
        return len(self.classes)

    def images(self, example_idx: np.ndarray, turns: np.ndarray) -> np.ndarray:
        """The inputs of example indices ``(N, M)``: float32 images ``(N, M, 1, H, W)`` in [0, 1],
        rotated per row, or for text the embeddings ``(N, M, D)`` (``turns`` all 0)."""
        if isinstance(self.data, TextArrays):
            return self.data.embeddings[example_idx]
        raw = self.data.images[example_idx]
        out = np.empty(raw.shape, dtype=np.float32)
        for row, k in enumerate(turns):
            out[row] = np.rot90(raw[row], int(k), axes=(-2, -1))
        out /= 255.0
        return out[:, :, None]


class EpisodeSampler:
    """Draws episodes of ``spec`` from ``classes`` of ``data``; see the module docstring."""

    def __init__(
        self, data: EpisodeData, classes: Sequence[int], spec: EpisodeSpec, seed: int, stream: int = 0
    ) -> None:
        self.spec = spec
        self.seed = int(seed)
        self.stream = int(stream)
        self.pool = _ClassPool(data, classes, rotations=spec.rotations, min_examples=spec.k_shot + spec.query)
        rot_note = " (rotations included)" if spec.rotations else ""
        if spec.n_way > self.pool.size:
            raise EpisodeError(
                "n_way", f"n_way = {spec.n_way} but only {self.pool.size} classes are allowed{rot_note}"
            )
        self._eligible: list[int] = []
        if spec.within_group:
            if not data.groups:
                raise EpisodeError(
                    "within_group", "within-group episodes need class groups; this data has none"
                )
            sizes = [len(m) for m in self.pool.group_members]
            self._eligible = [
                g for g, s in enumerate(sizes) if s >= spec.n_way and self.pool.group_keys[g][0]
            ]
            if not self._eligible:
                best = max(range(len(sizes)), key=lambda g: sizes[g])
                raise EpisodeError(
                    "within_group",
                    f"no group has n_way = {spec.n_way} classes; the largest, "
                    f"{self.pool.group_keys[best][0]!r}, has {sizes[best]}{rot_note}",
                )

    @property
    def eligible_groups(self) -> list[str]:
        """Names of the groups within-group episodes are drawn from (empty unless ``within_group``)."""
        return sorted({self.pool.group_keys[g][0] for g in self._eligible})

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Episode ``index`` as indices: ``(pool rows (N,), data example indices (N, K+Q), turns (N,))``."""
        rng = episode_rng(self.seed, self.stream, index)
        spec = self.spec
        if spec.within_group:
            group = self._eligible[int(rng.integers(len(self._eligible)))]
            members = self.pool.group_members[group]
            rows = members[rng.choice(len(members), size=spec.n_way, replace=False)]
        else:
            rows = rng.choice(self.pool.size, size=spec.n_way, replace=False)
        m = spec.k_shot + spec.query
        examples = np.stack(
            [
                self.pool.examples[c][rng.choice(len(self.pool.examples[c]), size=m, replace=False)]
                for c in self.pool.classes[rows]
            ]
        )
        return rows, examples, self.pool.turns[rows]

    def _arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows, examples, turns = self.draw(index)
        images = self.pool.images(examples, turns)
        k = self.spec.k_shot
        n = self.spec.n_way
        xs = images[:, :k].reshape(n * k, *images.shape[2:])
        xq = images[:, k:].reshape(n * self.spec.query, *images.shape[2:])
        return xs, xq, self.pool.classes[rows], turns

    def labels(self) -> tuple[Tensor, Tensor]:
        """The label vectors ``(N*K,)`` and ``(N*Q,)`` shared by every episode (class-major)."""
        n, k, q = self.spec.n_way, self.spec.k_shot, self.spec.query
        return torch.arange(n).repeat_interleave(k), torch.arange(n).repeat_interleave(q)

    def episode(self, index: int) -> Episode:
        """Episode ``index`` (see :class:`Episode`)."""
        xs, xq, classes, turns = self._arrays(index)
        ys, yq = self.labels()
        return Episode(torch.from_numpy(xs), ys, torch.from_numpy(xq), yq, classes, turns)

    def batch(self, start: int, count: int, device: torch.device | str = "cpu") -> TaskBatch:
        """Episodes ``start .. start+count-1`` stacked as a :class:`TaskBatch` on ``device``.

        Shapes: ``x_support (count, N*K, 1, H, W)``, ``y_support (count, N*K)``,
        ``x_query (count, N*Q, 1, H, W)``, ``y_query (count, N*Q)``; text inputs are ``(count, N*K, D)``
        and ``(count, N*Q, D)``.
        """
        parts = [self._arrays(start + i) for i in range(count)]
        xs = torch.from_numpy(np.stack([p[0] for p in parts]))
        xq = torch.from_numpy(np.stack([p[1] for p in parts]))
        ys, yq = self.labels()
        return TaskBatch(
            xs.to(device), ys.expand(count, -1).to(device), xq.to(device), yq.expand(count, -1).to(device)
        )


class PairSampler:
    """Same/different image pairs for verification training (Koch et al., 2015).

    Batch ``index`` holds ``n_pairs`` pairs, the first half (rounded up) of the same
    class (two distinct examples), the rest of two different classes (of one group when
    ``within_group``); deterministic in ``(seed, stream, index)`` like episodes.
    """

    def __init__(
        self,
        data: EpisodeData,
        classes: Sequence[int],
        *,
        rotations: bool,
        within_group: bool,
        seed: int,
        stream: int = 1,
    ) -> None:
        self.pool = _ClassPool(
            data, classes, rotations=rotations, min_examples=2, need="a same-class pair", need_field="classes"
        )
        if self.pool.size < 2:
            raise EpisodeError(
                "classes", f"pairs of different classes need >= 2 classes, got {self.pool.size}"
            )
        self.within_group = within_group
        self.seed = int(seed)
        self.stream = int(stream)
        self._multi = [g for g, m in enumerate(self.pool.group_members) if len(m) >= 2]
        if within_group and not self._multi:
            raise EpisodeError("within_group", "no group has 2 classes to draw a different-class pair from")

    def batch(
        self, index: int, n_pairs: int, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(first (P,1,H,W), second (P,1,H,W), same (P,) float32 1.0/0.0)`` for batch ``index``."""
        if n_pairs < 2:
            raise EpisodeError("n_pairs", f"need at least 2 pairs (one same, one different), got {n_pairs}")
        rng = episode_rng(self.seed, self.stream, index)
        n_same = (n_pairs + 1) // 2
        rows_a = np.empty(n_pairs, dtype=np.int64)
        rows_b = np.empty(n_pairs, dtype=np.int64)
        ex_a = np.empty(n_pairs, dtype=np.int64)
        ex_b = np.empty(n_pairs, dtype=np.int64)
        for p in range(n_pairs):
            if p < n_same:
                r = int(rng.integers(self.pool.size))
                rows_a[p] = rows_b[p] = r
                pick = rng.choice(len(self.pool.examples[self.pool.classes[r]]), size=2, replace=False)
                ex_a[p], ex_b[p] = pick
            else:
                if self.within_group:
                    members = self.pool.group_members[self._multi[int(rng.integers(len(self._multi)))]]
                    rows_a[p], rows_b[p] = members[rng.choice(len(members), size=2, replace=False)]
                else:
                    rows_a[p], rows_b[p] = rng.choice(self.pool.size, size=2, replace=False)
                ex_a[p] = rng.integers(len(self.pool.examples[self.pool.classes[rows_a[p]]]))
                ex_b[p] = rng.integers(len(self.pool.examples[self.pool.classes[rows_b[p]]]))
        idx_a = np.array(
            [self.pool.examples[self.pool.classes[r]][e] for r, e in zip(rows_a, ex_a, strict=True)]
        )
        idx_b = np.array(
            [self.pool.examples[self.pool.classes[r]][e] for r, e in zip(rows_b, ex_b, strict=True)]
        )
        a = self.pool.images(idx_a[:, None], self.pool.turns[rows_a])[:, 0]
        b = self.pool.images(idx_b[:, None], self.pool.turns[rows_b])[:, 0]
        same = (np.arange(n_pairs) < n_same).astype(np.float32)
        return (
            torch.from_numpy(a).to(device),
            torch.from_numpy(b).to(device),
            torch.from_numpy(same).to(device),
        )
