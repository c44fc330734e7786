"""The launch forms: the same validation as the API, through the same service.

The algorithm choices and their settings' fields come from the engine's registry and
config declarations (:mod:`learning.algorithms`); nothing here lists them again.
"""

from __future__ import annotations

from collections.abc import Sequence

from django import forms
from django.db.models import DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import Coalesce, Now

from learning.algorithms import form_settings, meta_train_algorithms, transfer_methods
from learning.engine.algorithms import AlgorithmEntry
from learning.engine.config import ConfigError
from learning.engine.params import FormParam, check_form_value
from learning.models import Visibility
from tasks_app.engine_config import MIN_EVAL_EPISODES
from tasks_app.models import Job

VISIBILITY_CHOICES = [("", "Automatic: private if the data or source is private"), *Visibility.choices]

FIRST_JOB_INITIAL = {"steps": 500, "meta_batch": 4}
"""The form's initial values where they differ from the algorithms' defaults: a first job that
finishes in minutes on a CPU. The defaults themselves are the papers' full-length settings."""


def _setting_field(param: FormParam, initial: dict[str, object]) -> forms.Field:
    spec = param.spec
    options = {
        "required": False,
        "label": spec.label or param.name.replace("_", " ").capitalize(),
        "help_text": spec.help,
        "initial": initial.get(param.name, param.default),
    }
    # The bounds are checked once, by the engine, with the API's words; the browser gets them as hints.
    hints = {k: v for k, v in (("min", spec.minimum), ("max", spec.maximum)) if v is not None}
    if param.type is bool:
        return forms.BooleanField(**options)
    if param.type is int:
        return forms.IntegerField(widget=forms.NumberInput(attrs=hints), **options)
    if param.type is float:
        return forms.FloatField(widget=forms.NumberInput(attrs={**hints, "step": "any"}), **options)
    if spec.choices is not None:
        return forms.ChoiceField(choices=[("", "default")] + [(c, c) for c in spec.choices], **options)
    return forms.CharField(**options)


_KIND_WORDS = {"image": "images", "text": "text", "function": "functions"}


def _algorithm_choices(entries: Sequence[AlgorithmEntry]) -> list[tuple[str, str]]:
    """One choice per algorithm name, image variants first, labelled with the kinds of data it takes
    unless that is images alone; the chosen domain picks the variant."""
    labels: dict[str, str] = {}
    kinds: dict[str, list[str]] = {}
    for entry in sorted(entries, key=lambda e: list(_KIND_WORDS).index(e.domain)):
        labels.setdefault(entry.name, entry.label)
        kinds.setdefault(entry.name, []).append(_KIND_WORDS[entry.domain])
    return [
        (name, label if kinds[name] == ["images"] else f"{label} ({_words(kinds[name])})")
        for name, label in labels.items()
    ]


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


class SettingsMixin:
    """Adds a field per declared setting of the offered algorithms (empty: that algorithm's default).

    Each field names the algorithms that take it in ``data-algorithms``; the form names its
    algorithm field in ``chooser``, and every setting out of bounds is reported at once.
    """

    chooser = "algorithm"

    def add_setting_fields(
        self, entries: Sequence[AlgorithmEntry], initial: dict[str, object] | None = None
    ) -> None:
        takes: dict[str, list[str]] = {}
        # One name may stand for an image and a function variant (maml): it takes both's settings.
        settings_of: dict[str, list[FormParam]] = {}
        for entry in entries:
            known = {p.name for p in settings_of.setdefault(entry.name, [])}
            settings_of[entry.name] += [p for p in form_settings(entry) if p.name not in known]
        for entry in entries:
            for param in settings_of[entry.name]:
                # A field the form declares itself (seed: the task spec's too) is kept as declared.
                if param.name not in takes and param.name not in self.fields:
                    self.fields[param.name] = _setting_field(param, initial or {})
                if entry.name not in takes.setdefault(param.name, []):
                    takes[param.name].append(entry.name)
        for name, algorithms in takes.items():
            self.fields[name].widget.attrs["data-algorithms"] = " ".join(algorithms)
        self.setting_names = list(takes)
        self.settings_of = {name: [p.name for p in params] for name, params in settings_of.items()}
        self.setting_params = settings_of

    def check_settings(self, algorithm: str) -> None:
        """Add an error to every setting of ``algorithm`` that is out of its bounds, all at once."""
        for param in self.setting_params.get(algorithm, ()):
            value = self.cleaned_data.get(param.name)
            if value in (None, "") or param.name in self.errors:
                continue
            try:
                check_form_value(param, value)
            except ConfigError as err:
                self.add_error(param.name, str(err))

    def clean(self) -> dict:
        data = super().clean()
        if data.get(self.chooser):
            self.check_settings(data[self.chooser])
        return data

    @property
    def setting_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.setting_names]

    def hyperparameters(self, algorithm: str) -> dict:
        """The settings of ``algorithm`` the user filled in."""
        data = self.cleaned_data
        return {k: data[k] for k in self.settings_of.get(algorithm, ()) if data.get(k) not in (None, "")}


class MetaTrainForm(SettingsMixin, forms.Form):
    domain = forms.ChoiceField(help_text="The source domain to meta-train on.")
    task_spec = forms.ChoiceField(
        required=False, help_text="An existing task spec, or leave empty to define one."
    )
    n_way = forms.IntegerField(initial=5, min_value=1, label="N-way")
    k_shot = forms.IntegerField(initial=1, min_value=1, label="K-shot")
    query_size = forms.IntegerField(initial=15, min_value=1, label="Queries per class")
    within_group = forms.BooleanField(required=False, label="Episodes within one group (e.g. alphabet)")
    algorithm = forms.ChoiceField(initial="protonet")
    seed = forms.IntegerField(initial=0, min_value=0, help_text="Seeds the task spec and the training.")
    eval_episodes = forms.IntegerField(
        initial=MIN_EVAL_EPISODES, help_text="Meta-test episodes (at least 600)."
    )
    model_name = forms.CharField(required=False, max_length=200)
    visibility = forms.ChoiceField(choices=VISIBILITY_CHOICES, required=False, initial="")

    def __init__(self, *args, domains, task_specs, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [
            (d.slug, f"{d.name} ({d.get_modality_display().lower()})") for d in domains
        ]
        self.fields["task_spec"].choices = [("", "— define a new one below —")] + [
            (str(s.pk), f"{s.name} · {s.domain.name} (#{s.pk})") for s in task_specs
        ]
        entries = meta_train_algorithms()
        self.fields["algorithm"].choices = _algorithm_choices(entries)
        self.add_setting_fields(entries, FIRST_JOB_INITIAL)

    def service_arguments(self) -> dict:
        """The keyword arguments of ``job_create_meta_train`` from the cleaned data."""
        data = self.cleaned_data
        algorithm = data["algorithm"]
        hyperparameters = self.hyperparameters(algorithm)
        task = None
        if not data.get("task_spec"):
            task = {key: data[key] for key in ("n_way", "k_shot", "query_size", "within_group", "seed")}
        return {
            "domain_slug": data["domain"],
            "algorithm": algorithm,
            "hyperparameters": hyperparameters,
            "task_spec_id": data.get("task_spec") or None,
            "task": task,
            "model_name": data.get("model_name", ""),
            "eval_episodes": data["eval_episodes"],
            "visibility": data["visibility"] or None,
        }


class TransferForm(SettingsMixin, forms.Form):
    chooser = "method"

    source_model = forms.ChoiceField(help_text="The knowledge-base model to transfer from.")
    domain = forms.ChoiceField(label="Target domain", help_text="The new image domain.")
    task_spec = forms.ChoiceField(required=False, help_text="A task spec of the target, or define one below.")
    n_way = forms.IntegerField(initial=5, min_value=1, label="N-way")
    query_size = forms.IntegerField(initial=15, min_value=1, label="Queries per class")
    seed = forms.IntegerField(initial=0, min_value=0)
    method = forms.ChoiceField(initial="finetune")
    eval_episodes = forms.IntegerField(
        initial=MIN_EVAL_EPISODES, help_text="Episodes per shot count (≥ 600)."
    )
    model_name = forms.CharField(required=False, max_length=200)
    visibility = forms.ChoiceField(choices=VISIBILITY_CHOICES, required=False, initial="")

    def __init__(self, *args, models, domains, task_specs, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source_model"].choices = [
            (str(m.pk), f"{m.name} ({m.algorithm}, #{m.pk})") for m in models
        ]
        self.fields["domain"].choices = [(d.slug, d.name) for d in domains]
        self.fields["task_spec"].choices = [("", "— define a new one below —")] + [
            (str(s.pk), f"{s.name} · {s.domain.name} (#{s.pk})") for s in task_specs
        ]
        # One choice and one set of settings per method: the text variants take the same names.
        methods = transfer_methods("image")
        self.fields["method"].choices = [(m.name, m.label) for m in methods]
        self.add_setting_fields(methods)

    def service_arguments(self) -> dict:
        """The keyword arguments of ``job_create_transfer`` from the cleaned data."""
        data = self.cleaned_data
        task = None
        if not data.get("task_spec"):
            task = {
                "n_way": data["n_way"],
                "k_shot": 1,
                "query_size": data["query_size"],
                "seed": data["seed"],
            }
        return {
            "source_model_id": data["source_model"],
            "target_domain_slug": data["domain"],
            "method": data["method"],
            "hyperparameters": self.hyperparameters(data["method"]),
            "task_spec_id": data.get("task_spec") or None,
            "task": task,
            "eval_episodes": data["eval_episodes"],
            "model_name": data.get("model_name", ""),
            "visibility": data["visibility"] or None,
        }


class JobFilterForm(forms.Form):
    """Search jobs by model name and filter by status, kind, algorithm and domain; sort them."""

    SORTS = {
        "newest": ("-created_at", "-id"),
        "oldest": ("created_at", "id"),
        "longest": (F("duration").desc(nulls_last=True), "-id"),
    }

    q = forms.CharField(required=False, label="Search", max_length=200)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Job.Status.choices])
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *Job.Kind.choices])
    algorithm = forms.ChoiceField(required=False)
    domain = forms.ChoiceField(required=False)
    sort = forms.ChoiceField(
        required=False,
        choices=[("newest", "Newest first"), ("oldest", "Oldest first"), ("longest", "Longest")],
    )

    def __init__(self, *args, jobs: QuerySet[Job], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ordered = jobs.order_by()
        algorithms = sorted(set(filter(None, ordered.values_list("config__algorithm", flat=True))))
        self.fields["algorithm"].choices = [("", "Any algorithm"), *((a, a) for a in algorithms)]
        domains = sorted(set(ordered.exclude(domain=None).values_list("domain__slug", "domain__name")))
        self.fields["domain"].choices = [("", "Any domain"), *domains]

    def filter(self, jobs: QuerySet[Job]) -> QuerySet[Job]:
        if not self.is_valid():
            return jobs
        data = self.cleaned_data
        if q := data["q"].strip():
            jobs = jobs.filter(Q(config__model_name__icontains=q) | Q(config__name__icontains=q))
        for field, lookup in (("status", "status"), ("kind", "kind"), ("algorithm", "config__algorithm")):
            if data[field]:
                jobs = jobs.filter(**{lookup: data[field]})
        if data["domain"]:
            jobs = jobs.filter(domain__slug=data["domain"])
        ended = Coalesce(F("finished_at"), Now())
        jobs = jobs.annotate(
            duration=ExpressionWrapper(ended - F("started_at"), output_field=DurationField())
        )
        return jobs.order_by(*self.SORTS[data["sort"] or "newest"])
