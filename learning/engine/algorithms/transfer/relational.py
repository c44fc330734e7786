"""Relational-knowledge transfer (``rkd``): a fresh student distilled from the source's relations.

Relational Knowledge Distillation (Park et al., 2019): the distance-wise and angle-wise
losses between the student's and the source backbone's embeddings of the same examples (images,
or sentence embeddings through an MLP).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from learning.engine.algorithms.transfer.common import (
    TARGET_STREAM,
    batch_indices,
    inputs,
    run_transfer,
    target_setup,
)
from learning.engine.algorithms.transfer.data import TransferData, source_backbone
from learning.engine.checkpoints import CheckpointStore
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult

__all__ = ["rkd_angle_loss", "rkd_distance_loss", "train_rkd"]


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD distance-wise loss (Park et al., 2019) between embeddings ``(B, Ds)`` and ``(B, Dt)``; a scalar.

    Each net's pairwise Euclidean distances are divided by their mean over the distinct
    pairs, then compared with the Huber (smooth L1, delta 1) loss, averaged over all pairs.
    """
    with torch.no_grad():
        t_d = torch.cdist(teacher, teacher)
        t_d = t_d / t_d[t_d > 0].mean()
    s_d = _pairwise_distance(student)
    s_d = s_d / s_d[s_d > 0].mean()
    return F.smooth_l1_loss(s_d, t_d)


def _pairwise_distance(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distances ``(B, B)`` with a zero diagonal and finite gradients at zero distance."""
    sq = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(-1)
    d = sq.clamp(min=eps).sqrt()
    return d * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD angle-wise loss (Park et al., 2019) between embeddings ``(B, Ds)`` and ``(B, Dt)``; a scalar.

    For every triplet ``(i, j, k)`` the cosine of the angle at ``j`` is
    ``<e_ij, e_kj>`` with ``e_ij = (x_i - x_j) / ||x_i - x_j||``; the student's cosines are
    compared with the teacher's by the Huber loss, averaged over the ``B^3`` triplets.
    """
    with torch.no_grad():
        td = F.normalize(teacher.unsqueeze(0) - teacher.unsqueeze(1), p=2, dim=2)
        t_angle = torch.bmm(td, td.transpose(1, 2)).reshape(-1)
    sd = F.normalize(student.unsqueeze(0) - student.unsqueeze(1), p=2, dim=2)
    s_angle = torch.bmm(sd, sd.transpose(1, 2)).reshape(-1)
    return F.smooth_l1_loss(s_angle, t_angle)


def train_rkd(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Relational knowledge transfer: a fresh student, cross-entropy plus RKD-D and RKD-A from the source."""
    setup = target_setup(config, data)
    teacher, shape = source_backbone(data)
    teacher = teacher.to(setup.device).requires_grad_(False)
    n_classes = len(setup.train_classes)
    # The student has the teacher's architecture, at its own width when student.hidden is set:
    # every conv block's filters (images) or every hidden layer's width (text).
    hidden = config["student"]["hidden"]
    model_config = shape.model_config(n_classes, hidden)
    torch.manual_seed(config["seed"])
    model = shape.build(n_classes, hidden).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    x_all = inputs(data.target, setup.train_idx, setup.device)
    y_all = torch.from_numpy(setup.train_y).to(setup.device)
    batch = config["batch_size"]
    wd, wa = config["distance_weight"], config["angle_weight"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        idx = torch.from_numpy(batch_indices(config["seed"], TARGET_STREAM, step, len(y_all), batch))
        idx = idx.to(setup.device)
        x, y = x_all[idx], y_all[idx]
        with torch.no_grad():
            t_emb = teacher(x)
        s_emb = model.embed(x)
        logits = model.classifier(s_emb)
        ce = F.cross_entropy(logits, y)
        dist = rkd_distance_loss(s_emb, t_emb)
        angle = rkd_angle_loss(s_emb, t_emb)
        loss = ce + wd * dist + wa * angle
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return StepOutput(
            loss=float(loss.detach()),
            metrics={
                "train_accuracy": float((logits.argmax(-1) == y).float().mean()),
                "cross_entropy": float(ce.detach()),
                "rkd_distance": float(dist.detach()),
                "rkd_angle": float(angle.detach()),
            },
        )

    return run_transfer(
        "rkd",
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        config["steps"],
        min(batch, len(y_all)),
        (on_progress, should_stop, checkpoint),
    )
