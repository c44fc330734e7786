"""MAML, first-order MAML, Reptile and the pretrained baseline on sinusoid regression (domain "function")."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from learning.engine.algorithms import train, validate_config
from learning.engine.checkpoints import InMemoryCheckpointStore
from learning.engine.config import ConfigError
from learning.engine.data import ImageArrays
from learning.engine.functions import FunctionFamily, FunctionTasks, heldout_tasks
from learning.engine.nets import build_model
from learning.engine.regression_eval import adapted_mse
from learning.engine.weights import load_model

torch.set_num_threads(1)

SINE = FunctionFamily.from_spec("sinusoid")


@pytest.fixture(scope="module")
def heldout() -> FunctionTasks:
    return heldout_tasks(SINE, seed=0, n_tasks=300, k_context=10, n_target=50)


def _untrained_mse(
    heldout: FunctionTasks, steps: tuple[int, ...] = (0, 1, 10), inner_lr: float = 0.01
) -> dict[int, float]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model({"arch": "mlp", "hidden": [40, 40]})
    return {n: float(v.mean()) for n, v in adapted_mse(net, heldout, inner_lr=inner_lr, steps=steps).items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "steps", "inner_lr"), [("maml", 800, 0.01), ("fomaml", 800, 0.01), ("reptile", 500, 0.02)]
)
def test_a_short_meta_training_lowers_the_adapted_sinusoid_mse(
    algorithm: str, steps: int, inner_lr: float, heldout: FunctionTasks
) -> None:
    # given
    untrained = _untrained_mse(heldout, inner_lr=inner_lr)
    # when
    result = train({"algorithm": algorithm, "domain": "function", "steps": steps, "seed": 0}, SINE)
    model = load_model(result.weights, result.model_config)
    adapt = result.model_config["adapt"]
    trained = {
        n: float(v.mean())
        for n, v in adapted_mse(model, heldout, inner_lr=adapt["inner_lr"], steps=(1, 10)).items()
    }
    # then: an untrained net stays near the functions' variance (about 4); meta-learning gets far below
    assert adapt == {"inner_lr": inner_lr, "inner_steps": 10}  # evaluation adapts like training
    assert trained[1] < 0.85 * untrained[1], (untrained, trained)
    assert trained[10] < 0.6 * untrained[10], (untrained, trained)
    assert trained[10] < trained[1]  # the learned initialization keeps improving with more steps
    assert result.metrics["val_mse_after_10"] < 0.6 * untrained[10]


def test_pretraining_on_all_tasks_learns_the_mean_function(heldout: FunctionTasks) -> None:
    # given: with phase ~ U[0, pi], E[A sin(x - phi)] = -2 E[A] cos(x) / pi, which a pooled fit learns
    untrained = _untrained_mse(heldout, steps=(0,))
    x = heldout.x_tgt.astype(np.float64)
    mean_fn = -2 * 2.55 * np.cos(x) / np.pi
    best_possible = float(((heldout.y_tgt - mean_fn) ** 2).mean())
    # when
    result = train({"algorithm": "pretrain", "domain": "function", "steps": 600, "seed": 0}, SINE)
    model = load_model(result.weights, result.model_config)
    mse0 = float(adapted_mse(model, heldout, inner_lr=0.01, steps=(0,))[0].mean())
    # then
    assert mse0 < untrained[0] - 0.5, (untrained, mse0)
    assert mse0 < best_possible + 0.4, (best_possible, mse0)


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_resume_after_a_stop_is_bitwise_the_uninterrupted_run(algorithm: str) -> None:
    # given
    config = {
        "algorithm": algorithm,
        "domain": "function",
        "steps": 20,
        "seed": 4,
        "checkpoint_every": 6,
        "validation": {"tasks": 0},
    }
    full = train(config, SINE)
    store = InMemoryCheckpointStore()
    polls = iter([False] * 9 + [True] * 100)
    # when
    first = train(config, SINE, should_stop=lambda: next(polls), checkpoint=store)
    resumed = train(config, SINE, checkpoint=store)
    # then
    assert first.stopped and first.steps_done == 9 and store.saves[:2] == [6, 9]
    assert resumed.steps_done == 20
    for name, tensor in full.weights.items():
        assert torch.equal(tensor, resumed.weights[name]), name


def test_the_function_variant_is_picked_from_the_data_type() -> None:
    # given a config that does not name the domain
    config = {"algorithm": "fomaml", "steps": 2, "validation": {"tasks": 0}}
    # when
    result = train(config, SINE)
    # then
    assert validate_config(config, SINE)["domain"] == "function"
    assert result.model_config["arch"] == "mlp" and result.algorithm == "fomaml"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"task": {"k_shot": 0}}, "task.k_shot", "must be between 1 and 100000, got 0"),
        ({"task": {"n_way": 5}}, "task.n_way", "unknown setting 'n_way'"),
        ({"model": {"hidden": []}}, "model.hidden", "needs at least 1 entry, got []"),
        ({"model": {"arch": "conv4"}}, "model.arch", "must be one of ['mlp'], got 'conv4'"),
        ({"inner_lr": -0.1}, "inner_lr", "must be > 0 and <= 100, got -0.1"),
        ({"eval_inner_steps": 0}, "eval_inner_steps", "must be between 1 and 100, got 0"),
        ({"device": "gpu"}, "device", "got 'gpu'"),
        ({"rotations": True}, "rotations", "unknown setting 'rotations'"),
    ],
)
def test_bad_function_configs_name_the_field(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"algorithm": "maml", "domain": "function", **config})
    assert err.value.field == field
    assert message in str(err.value)


def test_function_maml_refuses_image_data() -> None:
    images = ImageArrays(np.zeros((2, 28, 28), np.uint8), np.array([0, 1]), ("a", "b"), ("", ""))
    with pytest.raises(ConfigError, match="needs FunctionFamily data, got ImageArrays"):
        train({"algorithm": "maml", "domain": "function", "steps": 1}, images)
