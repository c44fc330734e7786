"""The shared training loop: progress rate, stop, checkpoints and exact resume."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from learning.engine.checkpoints import CheckpointFormatError, InMemoryCheckpointStore
from learning.engine.loop import StepInterrupted, StepOutput, Trainable, TrainingDiverged, run_training


def _problem(seed: int = 0, *, sleep: float = 0.0, nan_at: int | None = None):
    """A small regression run whose steps draw from torch's RNG and a numpy generator (both must resume)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = np.random.Generator(np.random.PCG64(seed))
    target = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def step_fn(step, stop):
        x = torch.from_numpy(gen.standard_normal((16, 4)).astype(np.float32))
        y = x @ target + 0.1 * torch.randn(16, 1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sleep:
            time.sleep(sleep)
        value = float("nan") if step == nan_at else float(loss.detach())
        return StepOutput(loss=value, metrics={"double": 2 * value})

    return model, opt, gen, step_fn


def _run(total=30, store=None, stop=None, config=None, events=None, **kw):
    model, opt, gen, step_fn = _problem(**kw)
    result = run_training(
        Trainable(
            algorithm="toy",
            config=config or {"seed": 0, "steps": total},
            model=model,
            model_config={"arch": "toy"},
            optimizer=opt,
            generators={"data": gen},
            step_fn=step_fn,
            total_steps=total,
            examples_per_step=16,
            finalize=lambda: {"final_metric": 1.5},
        ),
        checkpoint_every=10,
        on_progress=events,
        should_stop=stop,
        checkpoint=store,
    )
    return result


@pytest.mark.slow
def test_progress_events_are_rate_bounded_and_end_on_the_final_step():
    # given steps of >= 10 ms for >= 1.2 s, and a callback that notes when each event arrives
    events: list[dict] = []
    times: list[float] = []

    def record(event):
        times.append(time.monotonic())
        events.append(event)

    # when
    result = _run(total=120, events=record, sleep=0.01)
    # then events come at least 0.5 s apart (the final one excepted), the last at the final step
    assert len(events) >= 3
    gaps = np.diff(times[:-1])
    assert gaps.min() >= 0.5
    assert events[-1]["step"] == 120 and events[-1]["total"] == 120 and events[-1]["eta_seconds"] == 0
    assert set(events[0]) == {"step", "total", "loss", "metrics", "examples_per_sec", "eta_seconds"}
    assert events[0]["examples_per_sec"] > 0 and "double" in events[0]["metrics"]
    assert result.history == events and not result.stopped and result.steps_done == 120
    assert result.metrics["final_metric"] == 1.5 and result.metrics["loss"] < events[0]["loss"]


def test_stop_returns_a_stopped_result_with_a_checkpoint_and_no_finalize():
    # given a stop request after 7 polls
    polls = iter(range(1000))
    store = InMemoryCheckpointStore()
    # when
    result = _run(total=30, store=store, stop=lambda: next(polls) >= 7)
    # then
    assert result.stopped and result.steps_done == 7
    assert store.saves == [7] and "final_metric" not in result.metrics


def test_resume_after_a_stop_gives_bitwise_the_uninterrupted_weights():
    # given an uninterrupted run and a run stopped at step 13 then resumed from its checkpoint
    full = _run(total=30)
    store = InMemoryCheckpointStore()
    polls = iter(range(1000))
    first = _run(total=30, store=store, stop=lambda: next(polls) >= 13)
    # when resumed in a fresh model (different init seed: everything must come from the checkpoint)
    resumed = _run(total=30, store=store, seed=123)
    # then
    assert first.stopped and first.steps_done == 13
    assert resumed.steps_done == 30 and not resumed.stopped
    assert store.saves == [10, 13, 20, 30]
    for k, v in full.weights.items():
        assert torch.equal(v, resumed.weights[k]), k
    assert resumed.history[0]["step"] == first.history[0]["step"]


def test_a_run_that_already_finished_resumes_to_the_same_result():
    # given a finished run's store
    store = InMemoryCheckpointStore()
    done = _run(total=12, store=store)
    # when the same job runs again (e.g. a retried worker)
    again = _run(total=12, store=store, seed=5)
    # then no step runs and the weights are the same
    assert again.steps_done == 12 and store.saves == [10, 12]
    for k, v in done.weights.items():
        assert torch.equal(v, again.weights[k])


def test_a_checkpoint_of_another_config_is_refused():
    # given a checkpoint of one config
    store = InMemoryCheckpointStore()
    _run(total=10, store=store, config={"seed": 0, "lr": 1})
    # when a run with another config meets it / then refused
    with pytest.raises(CheckpointFormatError, match="different config"):
        _run(total=10, store=store, config={"seed": 0, "lr": 2})
    # and a change of device or checkpoint frequency alone is allowed
    _run(total=10, store=store, config={"seed": 0, "lr": 1, "device": "cpu", "checkpoint_every": 3})


def test_a_step_interrupted_midway_ends_the_run_after_the_previous_step():
    # given a step function that gives up on its 4th step, as a chunked MAML step does on a stop request
    model, opt, _, inner = _problem()
    before: dict[str, torch.Tensor] = {}

    def step_fn(step, stop):
        if step == 3:
            before.update({k: v.clone() for k, v in model.state_dict().items()})
            raise StepInterrupted()
        return inner(step, stop)

    store = InMemoryCheckpointStore()
    # when
    result = run_training(
        Trainable(
            algorithm="toy",
            config={},
            model=model,
            model_config={},
            optimizer=opt,
            step_fn=step_fn,
            total_steps=10,
            examples_per_step=1,
        ),
        checkpoint=store,
    )
    # then
    assert result.stopped and result.steps_done == 3 and store.saves == [3]
    for k, v in before.items():
        assert torch.equal(result.weights[k], v)


def test_a_non_finite_loss_raises_with_the_step():
    with pytest.raises(TrainingDiverged, match="step 5"):
        _run(total=10, nan_at=4)


def test_a_stop_before_the_first_step_returns_json_safe_metrics():
    # given a stop request that is already set / when training starts
    store = InMemoryCheckpointStore()
    result = _run(total=10, store=store, stop=lambda: True)
    # then nothing ran, the initial state is checkpointed, and the metrics are strict JSON (no NaN)
    assert result.stopped and result.steps_done == 0 and store.saves == [0]
    assert "loss" not in result.metrics
    json.dumps(result.metrics, allow_nan=False)
