"""Configs as a flat table: dotted keys, long lists summarized, defaults marked, unset options left out."""

from __future__ import annotations

from learning.config_table import config_rows, engine_defaults


def test_rows_flatten_sections_summarize_long_lists_and_mark_defaults():
    defaults = engine_defaults("maml", "image")
    config = {
        **defaults,
        "task": {**defaults["task"], "n_way": 20, "meta_train_classes": [*range(60), *range(64, 74), 80]},
        "source_model": None,
    }

    rows = {row.key: row for row in config_rows(config, defaults)}

    assert rows["task.n_way"].value == "20" and rows["task.n_way"].is_default is False
    assert rows["task.k_shot"].value == "1" and rows["task.k_shot"].is_default is True
    assert rows["rotations"].value == "true"
    classes = rows["task.meta_train_classes"]
    assert classes.value == "71 classes: 0-59, 64-73, 80"
    assert classes.full.startswith("0, 1, 2,") and classes.full.endswith("73, 80")
    # options never set (None by default) are left out, not shown as a dash
    assert "task.meta_train_groups" not in rows and "source_model" not in rows


def test_short_lists_stay_whole_and_unknown_defaults_are_not_guessed():
    rows = config_rows({"task": {"meta_train_groups": ["Greek", "Latin"]}, "extra": 3})

    assert [(r.key, r.value, r.full, r.is_default) for r in rows] == [
        ("task.meta_train_groups", '["Greek", "Latin"]', None, None),
        ("extra", "3", None, None),
    ]
