"""Feature-representation transfer (``feature``): the frozen source backbone, a new head on its features."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from learning.engine.algorithms.transfer.common import (
    inputs,
    run_transfer,
    set_prototype_head,
    target_setup,
)
from learning.engine.algorithms.transfer.data import TransferData, source_backbone
from learning.engine.checkpoints import CheckpointStore
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult

__all__ = ["train_feature"]


def train_feature(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Feature-representation transfer: the frozen source backbone, a logistic or prototype head on top."""
    setup = target_setup(config, data)
    backbone, shape = source_backbone(data)
    n_classes = len(setup.train_classes)
    model_config = shape.model_config(n_classes)
    torch.manual_seed(config["seed"])
    model = shape.build(n_classes)
    model.backbone.load_state_dict(backbone.state_dict())
    model = model.to(setup.device)
    model.backbone.requires_grad_(False)
    x_all = inputs(data.target, setup.train_idx, setup.device)
    y_all = torch.from_numpy(setup.train_y).to(setup.device)
    model.eval()
    with torch.no_grad():
        # Batch-statistics norm: features come from chunks of batch_size, as a training batch would see.
        feats = torch.cat(
            [
                model.embed(x_all[s : s + config["batch_size"]])
                for s in range(0, len(x_all), config["batch_size"])
            ]
        )
    head = model.classifier

    if config["head"] == "prototypes":
        optimizer = None
        total_steps = 1

        def step_fn(step: int, stop: StopFn) -> StepOutput:
            with torch.no_grad():
                set_prototype_head(head, feats, y_all, n_classes)
                logits = head(feats)
                ce = F.cross_entropy(logits, y_all)
            acc = float((logits.argmax(-1) == y_all).float().mean())
            return StepOutput(loss=float(ce), metrics={"train_accuracy": acc})

    else:
        # Starting from the prototype classifier (rather than a random layer) gives the logistic
        # regression a sensible solution from the first step; the steps then refine it.
        with torch.no_grad():
            set_prototype_head(head, feats, y_all, n_classes)
        optimizer = torch.optim.Adam(head.parameters(), lr=config["lr"])
        total_steps = config["steps"]
        wd = config["weight_decay"]

        def step_fn(step: int, stop: StopFn) -> StepOutput:
            logits = head(feats)
            ce = F.cross_entropy(logits, y_all)
            loss = ce + 0.5 * wd * (head.weight**2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            acc = float((logits.argmax(-1) == y_all).float().mean())
            return StepOutput(loss=float(loss.detach()), metrics={"train_accuracy": acc})

    return run_transfer(
        "feature",
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        total_steps,
        len(y_all),
        (on_progress, should_stop, checkpoint),
    )
