"""The experiment protocol: meta-train then evaluate, transfer then compare, as every caller runs them."""

from __future__ import annotations

from typing import Any

import pytest

from learning.engine.algorithms import train
from learning.engine.algorithms.transfer import TransferData
from learning.engine.checkpoints import InMemoryCheckpointStore
from learning.engine.evaluation import evaluate_classifier
from learning.engine.experiments import (
    EpisodePlan,
    Hooks,
    evaluate,
    meta_train_and_evaluate,
    transfer_and_compare,
)
from learning.engine.functions import FunctionFamily

TRAIN_GROUPS = ["Greek", "Latin"]


def _groups(data, names) -> list[int]:
    return [c for c in range(data.num_classes) if data.class_groups[c] in names]


def _protonet(**over: Any) -> dict[str, Any]:
    task = {"n_way": 3, "k_shot": 1, "query": 1, "meta_train_groups": TRAIN_GROUPS}
    base = {"algorithm": "protonet", "model": {"hidden": 8}, "task": task, "steps": 3, "device": "cpu"}
    return {**base, "checkpoint_every": 0, "seed": 5, **over}


class Recorder:
    """Hooks that keep every event and every checkpoint store they hand out.

    ``stop_in`` names a phase: the experiment is asked to stop once it has begun.
    """

    def __init__(self, stop_in: str | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stores: dict[str, InMemoryCheckpointStore] = {}
        self.stop_in = stop_in

    def hooks(self) -> Hooks:
        return Hooks(on_progress=self._progress, should_stop=self._stop, checkpoint_for=self._store)

    def _progress(self, phase: str, event: dict[str, Any]) -> None:
        self.events.append((phase, event))

    def _stop(self) -> bool:
        return self.stop_in in self.phases()

    def _store(self, run: str) -> InMemoryCheckpointStore:
        return self.stores.setdefault(run, InMemoryCheckpointStore())

    def phases(self) -> list[str]:
        return list(dict.fromkeys(phase for phase, _ in self.events))


def test_meta_train_and_evaluate_scores_held_out_classes_as_a_separate_evaluation_would(omniglot_small1):
    # given a tiny ProtoNet run and a plan on classes it never saw
    plan = EpisodePlan(
        n_way=3, k_shot=1, query=2, classes=_groups(omniglot_small1, ["Korean"]), episodes=40, strict=False
    )
    recorder = Recorder()
    # when the protocol runs
    report = meta_train_and_evaluate(_protonet(checkpoint_every=2), omniglot_small1, plan, recorder.hooks())
    # then the score is the one an evaluation of the same weights on the same episodes gives
    result = report.result
    again = evaluate_classifier(
        "protonet", result.weights, result.model_config, omniglot_small1,
        classes=plan.classes, n_way=3, k_shot=1, query=2, episodes=40, strict=False,
    )  # fmt: skip
    [score] = report.scores
    assert not report.stopped and score.metric == "accuracy" and score.episodes == 40
    assert (score.mean, score.ci95) == (again.mean, again.ci95)
    # and the caller heard training, then evaluation counted up to every episode
    assert recorder.phases() == ["training", "evaluating"]
    evaluating = [e for phase, e in recorder.events if phase == "evaluating" and "done" in e]
    assert evaluating[0]["done"] == 0 and evaluating[-1]["done"] == evaluating[-1]["total"] == 40
    assert recorder.stores["train"].saves == [2, 3]


def test_held_out_classes_that_were_meta_trained_on_are_refused(omniglot_small1):
    plan = EpisodePlan(
        n_way=3, k_shot=1, query=1, classes=_groups(omniglot_small1, ["Greek"]), episodes=5, strict=False
    )
    with pytest.raises(ValueError, match="evaluation classes were seen in meta-training"):
        meta_train_and_evaluate(_protonet(), omniglot_small1, plan)


def test_a_stop_during_evaluation_ends_the_experiment_without_scores(omniglot_small1):
    plan = EpisodePlan(n_way=3, k_shot=1, query=1, classes=_groups(omniglot_small1, ["Korean"]), episodes=600)
    # given hooks that ask to stop once evaluation has begun
    recorder = Recorder(stop_in="evaluating")
    # when / then
    report = meta_train_and_evaluate(_protonet(), omniglot_small1, plan, recorder.hooks())
    assert report.stopped and report.scores == [] and report.result.steps_done == 3


def test_transfer_and_compare_trains_the_baseline_and_pairs_it_at_every_shot_count(
    omniglot_small1, omniglot_small2
):
    # given a source trained on one domain and a target split into training and new classes
    source = train(_protonet(), omniglot_small1)
    tagalog = _groups(omniglot_small2, ["Tagalog"])
    data = TransferData(omniglot_small2, source.weights, source.model_config, "protonet")
    config = {
        "algorithm": "finetune",
        "target": {"train_classes": tagalog[:6], "examples_per_class": 3},
        "steps": 3,
        "batch_size": 8,
        "device": "cpu",
        "checkpoint_every": 0,
    }
    plan = EpisodePlan(n_way=3, k_shot=1, query=2, classes=tagalog[6:], episodes=30, strict=False)
    recorder = Recorder()
    # when
    report = transfer_and_compare(config, data, plan, shots=[1, 3], hooks=recorder.hooks())
    # then both runs trained, and each shot count has the pair on identical episodes
    assert report.baseline is not None and report.baseline.algorithm == "scratch"
    assert [s.shots for s in report.scores] == [1, 3]
    for score in report.scores:
        assert score.episodes == 30 and score.baseline_mean is not None and score.gain_ci95 is not None
    assert recorder.phases() == ["transferring", "baseline", "evaluating"]
    steps = [e["step"] for phase, e in recorder.events if "step" in e]
    assert steps[-1] == 6 and all(e["total"] == 6 for _, e in recorder.events if "step" in e)
    # each run also reports its own step, so the two curves can be drawn against the same axis
    run_steps = {
        phase: [e["run_step"] for p, e in recorder.events if p == phase]
        for phase in ("transferring", "baseline")
    }
    assert run_steps["transferring"][-1] == run_steps["baseline"][-1] == 3
    # and without a penalty, fine-tuning's loss is its cross-entropy: one curve, not two equal ones
    assert all("cross_entropy" not in e["metrics"] for _, e in recorder.events if "step" in e)
    assert set(recorder.stores) == {"transfer", "scratch"}
    done = [e for phase, e in recorder.events if "done" in e]
    assert done[-1]["done"] == done[-1]["total"] == 2 * 2 * 30


def test_a_function_family_is_scored_by_mse_and_log_likelihood():
    family = FunctionFamily.from_spec("sinusoid")
    config = {"algorithm": "cnp", "steps": 3, "model": {"hidden": 16}, "validation": {"tasks": 0}}
    plan = EpisodePlan(n_way=1, k_shot=5, query=10, episodes=20, strict=False)
    report = meta_train_and_evaluate(config, family, plan)
    assert [(s.metric, s.shots, s.episodes) for s in report.scores] == [
        ("mse", 5, 20),
        ("log_likelihood", 5, 20),
    ]
    # and scoring the weights alone gives the same numbers
    alone = evaluate(report.result.algorithm, report.result.weights, report.result.model_config, family, plan)
    assert alone == report.scores
