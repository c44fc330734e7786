"""Number formatting for the catalog pages: results as "97.3% ± 0.4", counts as "1,623".

And ``visible_to``: whether the viewer may see a row a page would name (a task spec of an
evaluation, say), so that nothing of someone else's private entry is shown.
"""

from __future__ import annotations

import math

from django import template

from learning.models import Evaluation

register = template.Library()


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _result(mean: float | None, ci95: float | None, metric: str) -> str:
    if mean is None:
        return "—"
    if metric == Evaluation.Metric.ACCURACY:
        text = f"{mean * 100:.1f}%"
        return text if ci95 is None else f"{text} ± {ci95 * 100:.1f}"
    text = _number(mean)
    return text if ci95 is None else f"{text} ± {_number(ci95)}"


@register.filter
def result(evaluation: Evaluation) -> str:
    """The evaluation's mean and 95% CI half-width: accuracy in percent, other metrics as numbers."""
    return _result(evaluation.mean, evaluation.ci95, evaluation.metric)


@register.filter
def baseline(evaluation: Evaluation) -> str:
    """The from-scratch baseline on the same episodes, or a dash when none was run."""
    return _result(evaluation.baseline_mean, evaluation.baseline_ci95, evaluation.metric)


@register.filter
def gain(evaluation: Evaluation) -> str:
    """How far the model beats the baseline ("+3.1 ± 0.8 pts" for accuracy); empty without a baseline.

    ``Evaluation.gain`` is already signed so that "+" means better, for error metrics too.
    """
    value = evaluation.gain
    if value is None:
        return ""
    ci = evaluation.gain_ci95
    if evaluation.metric == Evaluation.Metric.ACCURACY:
        return f"{value * 100:+.1f}{f' ± {ci * 100:.1f}' if ci is not None else ''} pts"
    return f"{value:+.3g}{f' ± {ci:.2g}' if ci is not None else ''}"


@register.filter
def number(value) -> str:
    """Integers with thousands separators, floats to 4 significant digits, anything else as is."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _number(value)
    return "—" if value is None else str(value)


@register.filter
def short_hash(value: str, length: int = 12) -> str:
    return value[:length] if value else "—"


@register.filter
def heat(evaluation: Evaluation) -> str:
    """A background colour for a heatmap cell: green for a gain, red for a loss, pale when unsure."""
    value = evaluation.gain or 0.0
    scale = 0.25 if evaluation.metric == Evaluation.Metric.ACCURACY else 1.0
    strength = min(1.0, abs(value) / scale)
    hue = 140 if value >= 0 else 4
    return f"hsl({hue} 65% {96 - 40 * strength:.0f}%)"


@register.filter
def visible_to(row, user) -> bool:
    """Whether ``user`` may see ``row`` (an entry or None): ``{% if ev.task_spec|visible_to:user %}``."""
    return row is not None and row.is_visible_to(user)


@register.filter
def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal (0.8123 -> 81.2%); a dash for None."""
    return "—" if value is None else f"{100 * value:.1f}%"


@register.filter
def signed_percent(value: float | None) -> str:
    """A difference of fractions in percentage points, signed (0.05 -> +5.0 pts); a dash for None."""
    return "—" if value is None else f"{100 * value:+.1f} pts"


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as people read them: "42 s", "3 min 05 s", "1 h 02 min"; a dash for None."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
