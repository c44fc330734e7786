"""MAML meta-training throughput: our engine next to learn2learn 0.2.0, one process, identical task batches.

Omniglot 5-way 1-shot, 1 query per class, 28x28, meta-batch 32, inner lr 0.4, one inner
step, second and first order, Adam 1e-3 outer step. Every implementation trains its own
copy of the same initial weights on the same pre-drawn task batches; the table gives
tasks per second whose meta-gradient *and* outer Adam step are done:

- learn2learn: ``l2l.algorithms.MAML(model, lr=0.4, first_order=...)`` and its example loop
  (per task ``learner = maml.clone(); learner.adapt(loss(support)); loss(query).backward()``,
  then the gradients scaled by 1/meta-batch and ``optimizer.step()``), on learn2learn's own
  Conv4 (``l2l.vision.models.CNN4`` with one channel, max-pooling and a 64-wide head). That
  is the engine's Conv4 up to parameter names, so the weights are copied across.
  (learn2learn's ``OmniglotCNN`` is another net: stride-2 convolutions without max-pooling.)
- the engine as ``train()`` runs it (``learning/engine/algorithms/maml.py``):
  ``learning.engine.functional.maml_train_step`` with the chunk of ``task_chunk`` for the
  default config (``--chunk``), and with the whole meta-batch in one vmap (chunk 0).

The implementations are timed in rounds (each runs ``--seconds / --rounds`` a round, the
order rotating), so machine load affects them alike; a cell is the median of the rounds.
Gradient check: the meta-gradients of both, from identical weights, on ``--check-tasks``
tasks in float64 (must agree to 1e-10) and on a full batch in float32.

Needs learn2learn, which lives in its own venv (``bash benchmarks/peers/setup.sh``). Run from
the repository root:

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.maml_learn2learn --seconds 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

try:
    import learn2learn as l2l
except ImportError as exc:  # pragma: no cover - depends on the venv
    raise SystemExit(
        f"learn2learn is not importable ({exc}); run `bash benchmarks/peers/setup.sh` and use "
        "benchmarks/peers/.venv/bin/python"
    ) from exc

from benchmarks._results import append_results
from learning.engine.algorithms import validate_config
from learning.engine.algorithms._common import task_chunk
from learning.engine.device import resolve_device
from learning.engine.episodes import EpisodeSampler, EpisodeSpec
from learning.engine.functional import (
    InnerLoop,
    TaskBatch,
    batched_meta_gradient,
    check_functional_safe,
    maml_train_step,
)
from learning.engine.nets import build_model
from learning.engine.omniglot import load_omniglot_zip

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared/data/omniglot/images_background_small1.zip"
N_WAY = 5
INNER_LR = 0.4
OUTER_LR = 1e-3
MODEL_CONFIG = {
    "arch": "conv4",
    "in_channels": 1,
    "image_size": 28,
    "hidden": 64,
    "layers": 4,
    "head": "linear",
    "out_features": N_WAY,
}
"""What ``train_maml`` builds for the default config on 28x28 Omniglot."""

Grads = dict[str, Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the nets -------------------------------------------------------------------------------------


def engine_net() -> nn.Module:
    model = build_model(MODEL_CONFIG)
    check_functional_safe(model)
    return model


def l2l_conv4() -> nn.Module:
    """learn2learn's Conv4 with the engine's shape: 4 x [conv3x3 64 (pad 1), BatchNorm2d, ReLU, maxpool 2],
    flatten (64 x 1 x 1), Linear(64, 5). BatchNorm2d in train mode normalizes by batch statistics."""
    return l2l.vision.models.CNN4(
        N_WAY, hidden_size=64, layers=4, channels=1, max_pool=True, embedding_size=64
    )


def l2l_names(engine: nn.Module) -> dict[str, str]:
    """Engine Conv4 parameter name -> learn2learn CNN4 name: the k-th ``nn.Conv2d`` is ``features.k.conv``,
    the k-th norm ``features.k.normalize``, the head ``classifier``."""
    prefixes: dict[str, str] = {}
    counts = {"conv": 0, "normalize": 0}
    for name, module in engine.named_modules():
        if isinstance(module, nn.Conv2d):
            kind = "conv"
        elif type(module).__name__ == "BatchStatNorm":
            kind = "normalize"
        elif name == "head":
            prefixes[name] = "classifier"
            continue
        else:
            continue
        prefixes[name] = f"features.{counts[kind]}.{kind}"
        counts[kind] += 1
    return {
        name: f"{prefixes[name.rsplit('.', 1)[0]]}.{name.rsplit('.', 1)[1]}"
        for name, _ in engine.named_parameters()
    }


def copy_weights(src: nn.Module, dst: nn.Module) -> list[tuple[str, str]]:
    """Copy the engine Conv4 ``src``'s parameters into ``dst`` (an engine Conv4 or learn2learn's CNN4),
    mapping names with :func:`l2l_names` for the latter; returns the ``(src name, dst name)`` pairs."""
    dst_params = dict(dst.named_parameters())
    names = (
        l2l_names(src)
        if isinstance(dst, l2l.vision.models.CNN4)
        else {n: n for n, _ in src.named_parameters()}
    )
    if sorted(names.values()) != sorted(dst_params):
        raise SystemExit(f"cannot map {sorted(names)} onto {sorted(dst_params)}")
    with torch.no_grad():
        for sn, sp in src.named_parameters():
            dp = dst_params[names[sn]]
            if sp.shape != dp.shape:
                raise SystemExit(f"cannot map {sn} {tuple(sp.shape)} onto {names[sn]} {tuple(dp.shape)}")
            dp.copy_(sp)
    return list(names.items())


# --- one meta-training step of each implementation ------------------------------------------------


def l2l_meta_gradient(maml: l2l.algorithms.MAML, tasks: TaskBatch) -> tuple[float, float]:
    """learn2learn's example loop for one meta-batch: leaves the meta-gradient (mean over tasks) in
    ``.grad``; returns the mean query loss and accuracy (``.item()``-ed per task, as the example does)."""
    n = tasks.num_tasks
    error_sum = accuracy_sum = 0.0
    for i in range(n):
        learner = maml.clone()
        train_error = F.cross_entropy(learner(tasks.x_support[i]), tasks.y_support[i])
        learner.adapt(train_error)
        predictions = learner(tasks.x_query[i])
        evaluation_error = F.cross_entropy(predictions, tasks.y_query[i])
        evaluation_accuracy = l2l.utils.accuracy(predictions, tasks.y_query[i])
        evaluation_error.backward()
        error_sum += evaluation_error.item()
        accuracy_sum += evaluation_accuracy.item()
    for p in maml.parameters():
        p.grad.data.mul_(1.0 / n)
    return error_sum / n, accuracy_sum / n


def l2l_grads(model: nn.Module, tasks: TaskBatch, first_order: bool) -> Grads:
    """The learn2learn meta-gradient of ``model`` (not stepped), by parameter name."""
    maml = l2l.algorithms.MAML(model, lr=INNER_LR, first_order=first_order)
    maml.zero_grad(set_to_none=True)
    l2l_meta_gradient(maml, tasks)
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    maml.zero_grad(set_to_none=True)
    return grads


def engine_grads(model: nn.Module, tasks: TaskBatch, first_order: bool, chunk: int) -> Grads:
    """The engine's meta-gradient (``batched_meta_gradient``, as ``maml_train_step`` takes it) by name."""
    inner = InnerLoop(F.cross_entropy, INNER_LR, 1, first_order=first_order)
    grads, _, _ = batched_meta_gradient(model, tasks, inner, chunk=chunk)
    return {name: g.detach().clone() for name, g in grads.items()}


def max_diff(engine: Grads, peer: Grads, names: dict[str, str]) -> float:
    """Largest ``|engine[k] - peer[names[k]]|`` over all parameters ``k``."""
    return max(float((g - peer[names[k]]).abs().max()) for k, g in engine.items())


@dataclass
class Impl:
    """A timed implementation: ``step(batch)`` does one meta-gradient and one Adam step."""

    name: str
    net: str
    chunk: str
    step: Callable[[TaskBatch], object]
    rates: list[float] = field(default_factory=list)


def l2l_impl(model: nn.Module, first_order: bool, name: str, net: str) -> Impl:
    maml = l2l.algorithms.MAML(model, lr=INNER_LR, first_order=first_order)
    optimizer = torch.optim.Adam(maml.parameters(), lr=OUTER_LR)

    def step(tasks: TaskBatch) -> None:
        optimizer.zero_grad()
        l2l_meta_gradient(maml, tasks)
        optimizer.step()

    return Impl(name, net, "per task", step)


def engine_impl(model: nn.Module, first_order: bool, chunk: int, meta_batch: int, default: int) -> Impl:
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    inner = InnerLoop(F.cross_entropy, INNER_LR, 1, first_order=first_order)

    def step(tasks: TaskBatch) -> None:
        # train_maml's step_fn, less the sampling (the batches are drawn beforehand for everyone).
        _, outputs = maml_train_step(model, optimizer, tasks, inner, chunk=chunk, should_stop=lambda: False)
        (outputs.argmax(-1) == tasks.y_query).float().mean().item()

    size = chunk if chunk > 0 else meta_batch
    label = f"vmap x{size}" + (" (`task_chunk` default)" if chunk == default else f" (chunk {chunk})")
    return Impl("engine maml_train_step", "engine Conv4", label, step)


def time_rounds(
    impls: list[Impl], batches: list[TaskBatch], seconds: float, rounds: int, device: torch.device
) -> None:
    """Warm each implementation up (one step), then ``rounds`` rounds in rotating order of about
    ``seconds / rounds`` each (at least one step); appends each round's tasks/s to ``impl.rates``."""
    for impl in impls:
        impl.step(batches[0])
    _sync(device)
    per_round = seconds / rounds
    calls = 0
    for r in range(rounds):
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        for impl in order:
            start = time.perf_counter()
            tasks = 0
            while tasks == 0 or time.perf_counter() - start < per_round:
                batch = batches[calls % len(batches)]
                impl.step(batch)
                _sync(device)
                tasks += batch.num_tasks
                calls += 1
            impl.rates.append(tasks / (time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an Omniglot zip")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--query", type=int, default=1, help="query examples per class (MAML's Omniglot: 1)")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measuring time per implementation and order"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the seconds are split into")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="tasks per vmap call of the engine row 'as train() runs it' (default: task_chunk() of the "
        "default maml config on this device: 4 on CPU, the meta-batch on CUDA)",
    )
    parser.add_argument("--check-tasks", type=int, default=4, help="tasks of the float64 gradient check")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    default_config = validate_config({"algorithm": "maml", "meta_batch": args.meta_batch})
    default_chunk = task_chunk(default_config, device)
    chunk = default_chunk if args.chunk is None else args.chunk
    data = load_omniglot_zip(args.data)
    sampler = EpisodeSampler(
        data, range(data.num_classes), EpisodeSpec(N_WAY, 1, args.query, rotations=True), seed=0
    )
    batches = [sampler.batch(i * args.meta_batch, args.meta_batch, device) for i in range(4)]

    torch.manual_seed(0)
    initial = engine_net()
    names = dict(copy_weights(initial, l2l_conv4()))

    def engine_copy(dtype: torch.dtype = torch.float32) -> nn.Module:
        model = engine_net().to(device, dtype)
        copy_weights(initial, model)
        return model

    def l2l_copy(dtype: torch.dtype = torch.float32) -> nn.Module:
        model = l2l_conv4().to(device, dtype)
        copy_weights(initial, model)
        return model

    def to64(tasks: TaskBatch) -> TaskBatch:
        return TaskBatch(*(t.double() if t.is_floating_point() else t for t in tasks))

    check = to64(batches[1].slice(0, args.check_tasks))
    same = {name: name for name in names.values()}
    chunks = [chunk] + ([0] if chunk not in (0, args.meta_batch) else [])
    rows = []
    scale: dict[str, float] = {}
    for first_order in (False, True):
        order = "first" if first_order else "second"
        # Gradients from identical weights: engine vs learn2learn in float64 on the check tasks, and
        # each one's float32 error on a full batch against learn2learn's float64 meta-gradient.
        ref64 = l2l_grads(l2l_copy(torch.float64), check, first_order)
        truth = l2l_grads(l2l_copy(torch.float64), to64(batches[0]), first_order)
        scale[order] = max(float(g.abs().max()) for g in truth.values())
        err32 = max_diff(l2l_grads(l2l_copy(), batches[0], first_order), truth, same)
        print(f"{order} order, learn2learn: f32 error {err32:.1e}", flush=True)
        grad_cells = [("reference", f"{err32:.1e}")]
        for c in chunks:
            d64 = max_diff(engine_grads(engine_copy(torch.float64), check, first_order, c), ref64, names)
            e32 = max_diff(engine_grads(engine_copy(), batches[0], first_order, c), truth, names)
            grad_cells.append((f"{d64:.1e}", f"{e32:.1e}"))
            print(
                f"{order} order, engine chunk {c}: max |engine - l2l| f64 {d64:.1e}, f32 error {e32:.1e}",
                flush=True,
            )
            if d64 > 1e-10:
                raise SystemExit(f"meta-gradients differ by {d64:.3g} > 1e-10 in float64 ({order} order)")

        impls = [l2l_impl(l2l_copy(), first_order, "learn2learn MAML", "l2l CNN4 (= engine Conv4)")]
        impls += [engine_impl(engine_copy(), first_order, c, args.meta_batch, default_chunk) for c in chunks]
        time_rounds(impls, batches, args.seconds, args.rounds, device)

        base = statistics.median(impls[0].rates)
        for impl, (g64, g32) in zip(impls, grad_cells, strict=True):
            median = statistics.median(impl.rates)
            rows.append(
                [
                    order,
                    impl.name,
                    impl.net,
                    impl.chunk,
                    f"{median:.1f}",
                    f"{min(impl.rates):.1f} to {max(impl.rates):.1f}",
                    f"{median / base:.2f}x",
                    g64,
                    g32,
                ]
            )
            print(rows[-1], flush=True)

    headers = [
        "order",
        "implementation",
        "net",
        "tasks per call",
        f"tasks/s (median of {args.rounds} rounds)",
        "slowest to fastest round",
        "vs learn2learn",
        f"max abs grad diff vs l2l, f64 ({args.check_tasks} tasks)",
        f"max abs f32 grad error vs l2l f64 ({args.meta_batch} tasks)",
    ]
    notes = [
        f"Omniglot ({args.data.name}) 5-way 1-shot, {args.query} query/class, 28x28, meta-batch "
        f"{args.meta_batch}, inner lr {INNER_LR}, 1 inner step, Adam {OUTER_LR:g}; learn2learn "
        f"{l2l.__version__}; all in one process on the same pre-drawn task batches.",
        "tasks/s = tasks whose meta-gradient and outer Adam step are done, per second; "
        f"{args.seconds:g} s per cell after a one-step warm-up, in {args.rounds} interleaved rounds "
        "(rotating order); the median round is shown. Episode sampling is not timed for anyone.",
        "learn2learn: its example loop (clone, adapt, backward per task; grads x 1/meta-batch; "
        "Adam) on l2l.vision.models.CNN4(5, channels=1, max_pool=True, embedding_size=64), the "
        "engine's Conv4 up to parameter names (weights copied across; its BatchNorm2d keeps running "
        "stats but normalizes by batch statistics in train mode, like the engine's BatchStatNorm).",
        f"engine: maml_train_step as train() calls it; task_chunk() of the default config here is "
        f"{default_chunk}.",
        "gradients, from the initial weights: engine minus learn2learn in float64 on the same "
        f"{args.check_tasks} tasks (must be <= 1e-10), and each implementation's float32 meta-gradient "
        "minus learn2learn's float64 one on the first timed batch (largest |meta-gradient| entry: "
        + ", ".join(f"{k} order {v:.2g}" for k, v in scale.items())
        + ").",
    ]
    if args.no_record:
        print(headers)
    else:
        print(
            append_results(
                "MAML meta-training throughput: engine vs learn2learn",
                headers,
                rows,
                device=device,
                notes=notes,
            )
        )


if __name__ == "__main__":
    main()
