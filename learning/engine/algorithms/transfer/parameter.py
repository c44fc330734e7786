"""Parameter transfer: ``finetune`` and its from-scratch baseline ``scratch``, one implementation.

``finetune`` trains the source backbone plus a new linear head with cross-entropy on target
minibatches (``layers`` ``"all"`` or ``"head"``, optional L2-SP); ``scratch`` is the very
same training from a fresh initialization of the source's architecture. Both names are
registered with :func:`train_parameter`, which reads the method from ``config["algorithm"]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from learning.engine.algorithms.transfer.common import (
    TARGET_STREAM,
    batch_indices,
    inputs,
    run_transfer,
    set_prototype_head,
    target_setup,
)
from learning.engine.algorithms.transfer.data import TransferData, source_backbone
from learning.engine.checkpoints import CheckpointStore
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult

__all__ = ["FROM_SOURCE", "train_parameter"]

FROM_SOURCE: dict[str, bool] = {"scratch": False, "finetune": True}
"""The parameter-transfer methods: whether each starts its backbone from the source weights."""


def train_parameter(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """``finetune`` or ``scratch`` (``config["algorithm"]``): cross-entropy on target minibatches.

    ``finetune`` starts the backbone from the source's weights, ``scratch`` from a fresh
    initialization of the same architecture; everything else is the same.
    """
    algorithm = config["algorithm"]
    from_source = FROM_SOURCE[algorithm]
    setup = target_setup(config, data)
    backbone, shape = source_backbone(data)
    n_classes = len(setup.train_classes)
    model_config = shape.model_config(n_classes)
    torch.manual_seed(config["seed"])
    # Built the same way for both, so at one seed scratch and finetune share the head's initialization.
    model = shape.build(n_classes)
    if from_source:
        model.backbone.load_state_dict(backbone.state_dict())
    model = model.to(setup.device)
    x_all = inputs(data.target, setup.train_idx, setup.device)
    y_all = torch.from_numpy(setup.train_y).to(setup.device)
    batch = config["batch_size"]
    if config["head_init"] == "prototypes":
        # Imprinting (Qi et al., 2018): a head that already classifies by the class means sends
        # small, informative gradients into the transferred layers, where a random head's large
        # ones would first distort them (Kumar et al., 2022).
        with torch.no_grad():
            feats = torch.cat([model.embed(x_all[s : s + batch]) for s in range(0, len(x_all), batch)])
            set_prototype_head(model.classifier, feats, y_all, n_classes)
    if config["layers"] == "head":
        model.backbone.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config["lr"])
    alpha = config.get("l2sp", 0.0)
    beta = config.get("l2sp_beta", 0.0)
    anchor = [p.detach().clone() for p in model.backbone.parameters()] if alpha > 0 else []

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        idx = torch.from_numpy(batch_indices(config["seed"], TARGET_STREAM, step, len(y_all), batch))
        x, y = x_all[idx.to(setup.device)], y_all[idx.to(setup.device)]
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        loss = ce
        metrics = {"train_accuracy": float((logits.argmax(-1) == y).float().mean())}
        if alpha > 0:
            # L2-SP: pull the transferred layers toward their source values, not toward zero.
            pairs = zip(model.backbone.parameters(), anchor, strict=True)
            sp = torch.stack([((p - a) ** 2).sum() for p, a in pairs]).sum()
            loss = loss + 0.5 * alpha * sp
            metrics["l2sp_distance"] = float(sp.detach())
        if beta > 0:
            loss = loss + 0.5 * beta * (model.classifier.weight**2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if alpha > 0 or beta > 0:
            metrics["cross_entropy"] = float(ce.detach())  # the loss without its penalties
        return StepOutput(loss=float(loss.detach()), metrics=metrics)

    return run_transfer(
        algorithm,
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
