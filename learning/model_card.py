"""A model card: everything about one model a reader needs to judge and reproduce it, as markdown.

The card says what the model is (algorithm, weights and their sha256), what it learned
from (domains with licence and citation, the task spec and its split), where it came
from (its lineage), how it was configured (defaults marked), how it scored (every
evaluation with its 95% CI, baseline and paired gain), and the commands that download it,
train it again and score it again. It holds only what ``user`` may see.
"""

from __future__ import annotations

from django.template.defaultfilters import filesizeformat

from learning import selectors
from learning.config_table import config_rows, engine_defaults
from learning.models import Evaluation, MetaModel, TaskSpec
from tasks_app.models import Job
from tasks_app.rerun import job_rerun


def weights_filename(model: MetaModel) -> str:
    """The file name a download of the weights gets: ``model-<id>-<algorithm>.safetensors``."""
    return f"model-{model.pk}-{model.algorithm}.safetensors"


def _cell(text: object) -> str:
    """``text`` safe inside a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _percent_or_number(evaluation: Evaluation, value: float | None) -> str:
    if value is None:
        return "—"
    if evaluation.metric == Evaluation.Metric.ACCURACY:
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def _evaluation_rows(evaluations: list[Evaluation]) -> list[str]:
    rows = [
        "| target | task spec | shots | metric | mean ± 95% CI | episodes | baseline | gain ± 95% CI |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in evaluations:
        mean = f"{_percent_or_number(e, e.mean)} ± {_percent_or_number(e, e.ci95)}"
        baseline = _percent_or_number(e, e.baseline_mean)
        gain = "—"
        if e.gain is not None:
            gain = f"{_percent_or_number(e, e.gain)} ± {_percent_or_number(e, e.gain_ci95)}"
        spec = f"{_cell(e.task_spec.name)} (#{e.task_spec_id})" if e.task_spec else "—"
        rows.append(
            f"| {_cell(e.target_domain.name)} | {spec} | {e.shots} | {e.get_metric_display()} | {mean} "
            f"| {e.episodes:,} | {baseline} | {gain} |"
        )
    return rows


def model_card_markdown(*, user, model: MetaModel, base_url: str) -> str:
    """The card of ``model`` as ``user`` may see it; ``base_url`` (``http://host``) makes links absolute."""
    spec = selectors.task_spec_list(user=user).filter(pk=model.task_spec_id).first()
    sections = [
        _summary(model, base_url),
        _data(user, model, spec, base_url),
        _lineage(user, model),
        _configuration(model),
        _evaluations(user, model),
        _reproduce(user, model, spec, base_url),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _summary(model: MetaModel, base_url: str) -> list[str]:
    weights = "—"
    if model.weights_file:
        size = filesizeformat(model.weights_size)
        weights = f"`{weights_filename(model)}`, {size}, sha256 `{model.weights_sha256}`"
    return [
        f"# {model.name}",
        *([f"\n{model.description}"] if model.description else []),
        "",
        "| | |",
        "| --- | --- |",
        f"| Algorithm | {_cell(model.algorithm)} |",
        f"| Architecture | {_cell(model.architecture)} |",
        f"| Owner | {_cell(model.owner.get_username() if model.owner else '—')} |",
        f"| Added | {model.created_at:%Y-%m-%d} |",
        f"| Page | {base_url}/models/{model.pk}/ |",
        f"| Weights | {weights} (safetensors) |",
    ]


def _data(user, model: MetaModel, spec: TaskSpec | None, base_url: str) -> list[str]:
    lines = ["## Data", ""]
    for domain in selectors.domain_list(user=user).filter(models=model):
        kind = domain.get_modality_display().lower()
        cite = f"; cite: {domain.citation}" if domain.citation else ""
        lines.append(
            f"- Trained on **{domain.name}** ({base_url}/domains/{domain.slug}/), {kind}, "
            f"{domain.class_count:,} classes; licence: {domain.license or 'not stated'}{cite}"
        )
    if spec is not None:
        within = ", within one group" if spec.within_group else ""
        lines.append(
            f"- Task spec **{spec.name}** (#{spec.pk}): {spec.n_way}-way {spec.k_shot}-shot, "
            f"{spec.query_size} queries per class{within}, seed {spec.seed}; split by "
            f"{spec.split.get('by', '—')}; identity `{spec.identity_hash[:16]}`"
        )
    return lines


def _lineage(user, model: MetaModel) -> list[str]:
    lineage = selectors.metamodel_lineage(user=user, model=model)
    if lineage:
        chain = " → ".join(f"{m.name} (#{m.pk}, {m.algorithm})" for m in reversed(lineage))
        return ["## Lineage", "", f"{chain} → **this model**"]
    origin = (
        "Trained from scratch." if model.parent_id is None else "Transferred from a model you cannot see."
    )
    return ["## Lineage", "", origin]


def _configuration(model: MetaModel) -> list[str]:
    lines = ["## Configuration", "", "| setting | value | |", "| --- | --- | --- |"]
    defaults = engine_defaults(model.algorithm, model.hyperparameters.get("domain", "image"))
    for row in config_rows(model.hyperparameters, defaults):
        mark = "default" if row.is_default else "set" if row.is_default is False else ""
        lines.append(f"| `{row.key}` | {_cell(row.full or row.value)} | {mark} |")
    return lines


def _evaluations(user, model: MetaModel) -> list[str]:
    evaluations = list(selectors.evaluation_list(user=user).filter(model=model).select_related("task_spec"))
    if not evaluations:
        return ["## Evaluations", "", "Not evaluated yet."]
    return [
        "## Evaluations",
        "",
        "Mean over the episodes with the half-width of its 95% confidence interval; the baseline "
        "trains from scratch on identical episodes, and the gain's CI is paired over them.",
        "",
        *_evaluation_rows(evaluations),
    ]


def _reproduce(user, model: MetaModel, spec: TaskSpec | None, base_url: str) -> list[str]:
    lines = [
        "## Reproduce",
        "",
        "```sh",
        "# the weights",
        f"curl -fLo {weights_filename(model)} {base_url}/api/v1/models/{model.pk}/weights/",
    ]
    job = Job.objects.visible_to(user).that_trained(model).order_by("-pk").first()
    rerun = job_rerun(job) if job is not None else None
    if rerun is not None:
        lines += [f"# train it again (job #{rerun.job_id})", rerun.command]
    if spec is not None:
        lines += [
            "# score it again on its task spec's held-out classes",
            f".venv/bin/python manage.py evaluate --model {model.pk} --task-spec {spec.pk} --episodes 600",
        ]
    return [*lines, "```"]
