"""Forms of the server-rendered pages: list filters, the domain upload and sign-up.

Filter forms only narrow a queryset that a selector already scoped to the user; the
upload form only validates the shape of the input, and ``domain_import`` does the rest.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.db.models import F, Q, QuerySet

from learning.models import MetaModel, SourceDomain, Visibility


def _any(label: str, choices) -> list[tuple[str, str]]:
    return [("", f"Any {label}"), *choices]


class DomainFilterForm(forms.Form):
    """Search by name or description, and filter by modality and origin."""

    q = forms.CharField(required=False, label="Search", max_length=200)
    modality = forms.ChoiceField(required=False, choices=_any("modality", SourceDomain.Modality.choices))
    origin = forms.ChoiceField(required=False, choices=_any("origin", SourceDomain.Origin.choices))

    def filter(self, domains: QuerySet[SourceDomain]) -> QuerySet[SourceDomain]:
        if not self.is_valid():
            return domains
        data = self.cleaned_data
        if q := data["q"].strip():
            domains = domains.filter(Q(name__icontains=q) | Q(description__icontains=q))
        if data["modality"]:
            domains = domains.filter(modality=data["modality"])
        if data["origin"]:
            domains = domains.filter(origin=data["origin"])
        return domains


class ModelFilterForm(forms.Form):
    """Search by name or description, filter by algorithm, architecture, training domain and
    owner, and sort by date, name or the best measured accuracy or gain.

    The choices come from the models the user can see, so a filter never offers a value
    that would show nothing.
    """

    SORTS = {
        "newest": ("-created_at", "-id"),
        "oldest": ("created_at", "id"),
        "name": ("name", "id"),
        "accuracy": (F("best_accuracy").desc(nulls_last=True), "-id"),
        "gain": (F("best_gain").desc(nulls_last=True), "-id"),
    }
    """Orders of the list; the score sorts need :func:`learning.selectors.metamodel_list_scored`."""

    q = forms.CharField(required=False, label="Search", max_length=200)
    algorithm = forms.ChoiceField(required=False)
    architecture = forms.ChoiceField(required=False)
    domain = forms.ChoiceField(required=False, label="Trained on")
    owner = forms.ChoiceField(required=False)
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("newest", "Newest first"),
            ("oldest", "Oldest first"),
            ("name", "Name"),
            ("accuracy", "Best accuracy"),
            ("gain", "Best gain over scratch"),
        ],
    )

    def __init__(self, *args, models: QuerySet[MetaModel], domains: QuerySet[SourceDomain], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ordered = models.order_by()
        for field in ("algorithm", "architecture"):
            values = sorted(set(ordered.values_list(field, flat=True)))
            self.fields[field].choices = _any(field, [(v, v) for v in values])
        used = domains.filter(models__in=models).distinct().order_by("name").values_list("slug", "name")
        self.fields["domain"].choices = _any("domain", list(used))
        owners = sorted(set(ordered.exclude(owner=None).values_list("owner__username", flat=True)))
        self.fields["owner"].choices = _any("owner", [(o, o) for o in owners])

    def filter(self, models: QuerySet[MetaModel]) -> QuerySet[MetaModel]:
        if not self.is_valid():
            return models
        data = self.cleaned_data
        if q := data["q"].strip():
            models = models.filter(Q(name__icontains=q) | Q(description__icontains=q))
        for field in ("algorithm", "architecture"):
            if data[field]:
                models = models.filter(**{field: data[field]})
        if data["domain"]:
            models = models.filter(trained_on__slug=data["domain"]).distinct()
        if data["owner"]:
            models = models.filter(owner__username=data["owner"])
        return models.order_by(*self.SORTS[data["sort"] or "newest"])


class DomainUploadForm(forms.Form):
    """A new image domain from a zip of ``<class>/<image>`` (or ``<group>/<class>/<image>``) files,
    or a text domain from a CSV, TSV or JSON Lines file of ``text``, ``label`` (and ``group``)."""

    name = forms.CharField(max_length=200)
    source = forms.FileField(
        label="Zip of images, or a text file",
        help_text=(
            "Images: a zip with one folder per class (optionally inside one folder per group). "
            "Texts: a .csv or .tsv with a header row naming the columns text and label (and optionally "
            'group), or a .jsonl with one {"text": ..., "label": ...} object per line; every text is '
            "embedded once by the sentence encoder, as a job."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip,.csv,.tsv,.jsonl,.ndjson"}),
    )
    visibility = forms.ChoiceField(
        choices=Visibility.choices,
        initial=Visibility.PUBLIC,
        help_text="Private domains are visible to you only.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    citation = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    license = forms.CharField(required=False, max_length=200)

    def add_service_error(self, field: str | None, message: str) -> None:
        """Show an ``InvalidInput`` beside its field, or above the form when it names no field here."""
        self.add_error(field if field in self.fields else None, message)


class SignUpForm(UserCreationForm):
    """Django's sign-up form: a user name and a password typed twice."""
