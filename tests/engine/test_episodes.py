"""Episode and pair sampling: shapes, determinism, within-group, rotations and impossible requests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning.engine.data import ImageArrays
from learning.engine.episodes import EpisodeError, EpisodeSampler, EpisodeSpec, PairSampler


def _tiny(groups: dict[str, int], per_class: int = 6) -> ImageArrays:
    """A synthetic domain: ``groups[name]`` classes per group, ``per_class`` random images each."""
    names, group_of, images, labels = [], [], [], []
    rng = np.random.default_rng(0)
    for g, n in groups.items():
        for i in range(n):
            c = len(names)
            names.append(f"{g}/c{i}")
            group_of.append(g)
            for _ in range(per_class):
                images.append(rng.integers(0, 256, size=(28, 28), dtype=np.uint8))
                labels.append(c)
    return ImageArrays(np.stack(images), np.array(labels, dtype=np.int64), tuple(names), tuple(group_of))


def test_an_episode_has_the_requested_shape_labels_and_disjoint_examples(omniglot_small1):
    # given 5-way 2-shot 3-query episodes over the first 30 classes
    sampler = EpisodeSampler(omniglot_small1, range(30), EpisodeSpec(5, 2, 3), seed=1)
    # when
    ep = sampler.episode(0)
    # then
    assert ep.x_support.shape == (10, 1, 28, 28) and ep.x_query.shape == (15, 1, 28, 28)
    assert (
        ep.x_support.dtype == torch.float32
        and float(ep.x_support.min()) >= 0
        and float(ep.x_support.max()) <= 1
    )
    assert ep.y_support.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.y_query.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert len(set(ep.classes.tolist())) == 5 and all(0 <= c < 30 for c in ep.classes)
    _, examples, _ = sampler.draw(0)
    assert len(np.unique(examples)) == examples.size
    for label, c in enumerate(ep.classes):
        assert (omniglot_small1.labels[examples[label]] == c).all()
        expected = torch.from_numpy(omniglot_small1.images[examples[label, 0]] / np.float32(255))
        assert torch.equal(ep.x_support[2 * label, 0], expected)


def test_episodes_depend_only_on_seed_and_index_and_leave_global_rng_alone(omniglot_small1):
    # given two samplers with the same spec and seed, and a third with another seed
    spec = EpisodeSpec(5, 1, 2)
    a = EpisodeSampler(omniglot_small1, range(100), spec, seed=3)
    b = EpisodeSampler(omniglot_small1, range(100), spec, seed=3)
    c = EpisodeSampler(omniglot_small1, range(100), spec, seed=4)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    # when episodes are drawn in different orders
    later_first = b.episode(7)
    [b.episode(i) for i in range(3)]
    # then episode 7 is the same, other indices and seeds differ, and the global numpy RNG is untouched
    assert torch.equal(a.episode(7).x_query, later_first.x_query)
    assert not torch.equal(a.episode(7).x_query, a.episode(8).x_query)
    assert not np.array_equal(a.draw(7)[1], c.draw(7)[1])
    assert np.array_equal(np.random.get_state()[1], before)
    batch = a.batch(6, 2)
    assert torch.equal(batch.x_query[1], a.episode(7).x_query) and batch.x_support.shape == (2, 5, 1, 28, 28)


def test_within_group_episodes_stay_in_one_alphabet_and_skip_small_ones(omniglot_small2):
    # given 20-way within-alphabet episodes on small2 (Tagalog has only 17 characters)
    sampler = EpisodeSampler(
        omniglot_small2, range(omniglot_small2.num_classes), EpisodeSpec(20, 1, 1, True), 0
    )
    seen = set()
    # when
    for i in range(60):
        ep = sampler.episode(i)
        groups = {omniglot_small2.class_groups[c] for c in ep.classes}
        # then
        assert len(groups) == 1
        seen |= groups
    assert "Tagalog" not in seen and "Tagalog" not in sampler.eligible_groups
    assert len(seen) >= 3


def test_rotations_add_three_turned_copies_of_each_class():
    # given two classes with rotations: four episode classes each
    data = _tiny({"g": 2}, per_class=4)
    sampler = EpisodeSampler(data, [0, 1], EpisodeSpec(8, 1, 1, rotations=True), seed=0)
    # when
    ep = sampler.episode(0)
    _, examples, turns = sampler.draw(0)
    # then all 8 (class, turn) pairs appear, each image the original turned by its class's quarter turns
    assert sorted(zip(ep.classes.tolist(), ep.rotations.tolist(), strict=True)) == [
        (c, t) for c in (0, 1) for t in range(4)
    ]
    for label in range(8):
        original = data.images[examples[label, 0]]
        turned = np.rot90(original, int(turns[label])).astype(np.float32) / 255
        assert np.array_equal(ep.x_support[label, 0].numpy(), turned)
    # and without rotations, 8 ways are impossible with 2 classes
    with pytest.raises(EpisodeError, match=r"n_way = 8 but only 2 classes"):
        EpisodeSampler(data, [0, 1], EpisodeSpec(8, 1, 1), seed=0)


def test_rotated_classes_form_their_own_groups_for_within_group_episodes():
    # given one group of 3 classes with rotations, 3-way within-group episodes
    data = _tiny({"a": 3, "b": 1})
    sampler = EpisodeSampler(data, range(4), EpisodeSpec(3, 1, 1, within_group=True, rotations=True), seed=0)
    # when / then every episode is one alphabet in one orientation
    for i in range(20):
        ep = sampler.episode(i)
        assert len(set(ep.rotations.tolist())) == 1
        assert {data.class_groups[c] for c in ep.classes} == {"a"}


@pytest.mark.parametrize(
    ("classes", "spec", "field", "message"),
    [
        ([], EpisodeSpec(2, 1, 1), "classes", "split is empty"),
        ([0, 99], EpisodeSpec(2, 1, 1), "classes", "class index 99 is outside 0..4"),
        ([0, 1, 2], EpisodeSpec(5, 1, 1), "n_way", "n_way = 5 but only 3 classes"),
        (
            [0, 1],
            EpisodeSpec(2, 4, 3),
            "k_shot",
            r"k_shot \+ query = 7 exceeds the 6 examples of class 'a/c0'",
        ),
        (range(5), EpisodeSpec(4, 1, 1, within_group=True), "within_group", "largest, 'a', has 3"),
    ],
)
def test_impossible_requests_name_the_numbers(classes, spec, field, message):
    # given a domain of groups a (3 classes) and b (2), 6 examples each
    data = _tiny({"a": 3, "b": 2})
    # when / then
    with pytest.raises(EpisodeError, match=message) as info:
        EpisodeSampler(data, classes, spec, seed=0)
    assert info.value.field == field


@pytest.mark.parametrize(("n_way", "k_shot", "query"), [(0, 1, 1), (5, 0, 1), (5, 1, -1), (True, 1, 1)])
def test_an_invalid_spec_is_refused(n_way, k_shot, query):
    with pytest.raises(EpisodeError, match="must be an integer"):
        EpisodeSpec(n_way, k_shot, query)


def test_pairs_are_half_same_class_and_half_different(omniglot_small1):
    # given a pair sampler over two alphabets
    classes = [
        c for c in range(omniglot_small1.num_classes) if omniglot_small1.class_groups[c] in ("Greek", "Latin")
    ]
    pairs = PairSampler(omniglot_small1, classes, rotations=False, within_group=True, seed=0)
    # when
    a, b, same = pairs.batch(0, 9)
    # then
    assert a.shape == b.shape == (9, 1, 28, 28) and same.tolist() == [1.0] * 5 + [0.0] * 4
    assert all(not torch.equal(a[i], b[i]) for i in range(9))
    again = pairs.batch(0, 9)
    assert torch.equal(again[0], a) and not torch.equal(pairs.batch(1, 9)[0], a)
