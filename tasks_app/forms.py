"""The launch form: the same validation as the API, through the same service."""

from __future__ import annotations

from django import forms

from learning.models import Visibility
from tasks_app.engine_config import HYPERPARAMETERS, IMAGE_ALGORITHMS, MIN_EVAL_EPISODES

ALGORITHM_CHOICES = [
    ("protonet", "Prototypical Networks"),
    ("maml", "MAML (second order)"),
    ("fomaml", "First-order MAML"),
    ("reptile", "Reptile"),
    ("siamese", "Siamese network"),
    ("cnp", "Conditional Neural Process (functions)"),
    ("np", "Neural Process (functions)"),
]


class MetaTrainForm(forms.Form):
    domain = forms.ChoiceField(help_text="The source domain to meta-train on.")
    task_spec = forms.ChoiceField(
        required=False, help_text="An existing task spec, or leave empty to define one."
    )
    n_way = forms.IntegerField(initial=5, min_value=1, label="N-way")
    k_shot = forms.IntegerField(initial=1, min_value=1, label="K-shot")
    query_size = forms.IntegerField(initial=15, min_value=1, label="Queries per class")
    within_group = forms.BooleanField(required=False, label="Episodes within one group (e.g. alphabet)")
    algorithm = forms.ChoiceField(choices=ALGORITHM_CHOICES, initial="protonet")
    steps = forms.IntegerField(initial=500, help_text="Meta-training steps (episodes or meta-batches).")
    meta_batch = forms.IntegerField(initial=4, help_text="Tasks per meta-update.")
    outer_lr = forms.FloatField(initial=0.001, label="Outer learning rate")
    inner_lr = forms.FloatField(
        initial=0.4, label="Inner learning rate", help_text="MAML family and Reptile."
    )
    inner_steps = forms.IntegerField(initial=1, help_text="MAML family and Reptile.")
    lr = forms.FloatField(initial=0.0005, label="Learning rate", help_text="Neural Processes.")
    seed = forms.IntegerField(initial=0, min_value=0)
    eval_episodes = forms.IntegerField(
        initial=MIN_EVAL_EPISODES, help_text="Meta-test episodes (at least 600)."
    )
    model_name = forms.CharField(required=False, max_length=200)
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PUBLIC)

    def __init__(self, *args, domains, task_specs, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [
            (d.slug, f"{d.name} ({d.get_modality_display().lower()})") for d in domains
        ]
        self.fields["task_spec"].choices = [("", "— define a new one below —")] + [
            (str(s.pk), f"{s.name} · {s.domain.name} (#{s.pk})") for s in task_specs
        ]

    def service_arguments(self) -> dict:
        """The keyword arguments of ``job_create_meta_train`` from the cleaned data."""
        data = self.cleaned_data
        algorithm = data["algorithm"]
        hyperparameters = {
            key: data[key] for key in HYPERPARAMETERS.get(algorithm, ()) if data.get(key) is not None
        }
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
            "visibility": data["visibility"],
        }

    @property
    def image_algorithms(self) -> tuple[str, ...]:
        return IMAGE_ALGORITHMS


TRANSFER_METHOD_CHOICES = [
    ("finetune", "Parameter transfer: fine-tune the source (optionally with L2-SP)"),
    ("feature", "Feature-representation transfer: frozen backbone, new head"),
    ("instance", "Instance transfer: reweighted source examples with the target's"),
    ("rkd", "Relational-knowledge transfer: distill the source's relations (RKD)"),
]


class TransferForm(forms.Form):
    source_model = forms.ChoiceField(help_text="The knowledge-base model to transfer from.")
    domain = forms.ChoiceField(label="Target domain", help_text="The new image domain.")
    task_spec = forms.ChoiceField(required=False, help_text="A task spec of the target, or define one below.")
    n_way = forms.IntegerField(initial=5, min_value=1, label="N-way")
    query_size = forms.IntegerField(initial=15, min_value=1, label="Queries per class")
    seed = forms.IntegerField(initial=0, min_value=0)
    method = forms.ChoiceField(choices=TRANSFER_METHOD_CHOICES, initial="finetune")
    steps = forms.IntegerField(
        initial=200, help_text="Training steps, for the transfer and for the baseline."
    )
    lr = forms.FloatField(initial=0.001, label="Learning rate")
    eval_episodes = forms.IntegerField(
        initial=MIN_EVAL_EPISODES, help_text="Episodes per shot count (≥ 600)."
    )
    model_name = forms.CharField(required=False, max_length=200)
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PUBLIC)

    def __init__(self, *args, models, domains, task_specs, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source_model"].choices = [
            (str(m.pk), f"{m.name} ({m.algorithm}, #{m.pk})") for m in models
        ]
        self.fields["domain"].choices = [(d.slug, d.name) for d in domains]
        self.fields["task_spec"].choices = [("", "— define a new one below —")] + [
            (str(s.pk), f"{s.name} · {s.domain.name} (#{s.pk})") for s in task_specs
        ]

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
            "hyperparameters": {"steps": data["steps"], "lr": data["lr"], "seed": data["seed"]},
            "task_spec_id": data.get("task_spec") or None,
            "task": task,
            "eval_episodes": data["eval_episodes"],
            "model_name": data.get("model_name", ""),
            "visibility": data["visibility"],
        }
