"""The catalog's tables: SourceDomain, TaskSpec, MetaModel and Evaluation.

Rows are written only through ``learning.services`` and read through
``learning.selectors``; the models hold fields, constraints and row-level scoping.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

MAX_POSITIVE_INT = 2_147_483_647
"""The largest value a ``PositiveIntegerField`` holds on every database (PostgreSQL's ``integer``);
services refuse larger ones, which SQLite would refuse with a crash and PostgreSQL with a DataError."""


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


class CatalogQuerySet(models.QuerySet):
    """Row-level access: anonymous users see public rows, a user also sees their own.

    ``CatalogEntry.is_visible_to`` is the same rule for a row already loaded.
    """

    def visible_to(self, user) -> CatalogQuerySet:
        if user is not None and user.is_authenticated:
            if user.is_superuser:
                return self
            return self.filter(Q(visibility=Visibility.PUBLIC) | Q(owner=user))
        return self.filter(visibility=Visibility.PUBLIC)


class TaskSpecQuerySet(CatalogQuerySet):
    """A task spec is visible only where its domain is too: a public spec over a private domain
    would otherwise name (and number) something derived from the private data."""

    def visible_to(self, user) -> CatalogQuerySet:
        return super().visible_to(user).filter(domain__in=SourceDomain.objects.visible_to(user))


class CatalogEntry(models.Model):
    """Fields every catalog entry shares: who owns it, who may see it, when it came."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def is_visible_to(self, user) -> bool:
        """Whether ``user`` may see this row: ``CatalogQuerySet.visible_to``'s rule, without a query."""
        if self.visibility == Visibility.PUBLIC:
            return True
        if user is None or not user.is_authenticated:
            return False
        return user.is_superuser or self.owner_id == user.pk


class SourceDomain(CatalogEntry):
    """A data set that tasks are drawn from: image or text classes, or a family of functions.

    Image domains keep their normalized arrays (see ``learning.engine.data``) and one
    thumbnail per class in artifact storage; text domains keep the embeddings of their
    texts by the frozen sentence encoder (``TextArrays``) and a few example texts per
    class in ``classes``; function domains keep the generator's parameters in ``generator``.
    """

    class Modality(models.TextChoices):
        IMAGE_CLASSIFICATION = "image_classification", "Image classification"
        TEXT_CLASSIFICATION = "text_classification", "Text classification"
        FUNCTION_REGRESSION = "function_regression", "Function regression"

    class Origin(models.TextChoices):
        BUILTIN = "builtin", "Built in"
        UPLOAD = "upload", "Uploaded"
        URL = "url", "From a URL"

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    modality = models.CharField(max_length=40, choices=Modality.choices)
    description = models.TextField(blank=True)
    citation = models.TextField(blank=True)
    license = models.CharField(max_length=200, blank=True)
    origin = models.CharField(max_length=20, choices=Origin.choices)
    source_url = models.URLField(max_length=1000, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True, help_text="sha256 of the normalized data.")
    class_count = models.PositiveIntegerField(default=0)
    example_count = models.PositiveIntegerField(default=0)
    classes = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"name", "group", "count"}] in label order; text domains add "examples", a few texts.',
    )
    class_groups = models.JSONField(default=list, blank=True, help_text='[{"name", "class_count"}], sorted.')
    generator = models.JSONField(default=dict, blank=True, help_text="Parameters of a function family.")
    arrays_file = models.CharField(max_length=500, blank=True, help_text="Artifact name of the .npz arrays.")
    arrays_size = models.PositiveBigIntegerField(default=0)

    class Meta(CatalogEntry.Meta):
        constraints = [
            # Per owner: someone's private copy must not block, or reveal, another's import.
            models.UniqueConstraint(
                fields=["owner", "content_sha256"],
                condition=~Q(content_sha256=""),
                name="unique_domain_content_per_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        return self.modality == self.Modality.IMAGE_CLASSIFICATION

    @property
    def is_text(self) -> bool:
        return self.modality == self.Modality.TEXT_CLASSIFICATION

    @property
    def is_classification(self) -> bool:
        """Labeled classes that episodes are drawn from (images or texts), as opposed to functions."""
        return self.modality != self.Modality.FUNCTION_REGRESSION

    @property
    def engine_domain(self) -> str:
        """The engine's name for this kind of data: ``image``, ``text`` or ``function``."""
        return {self.Modality.IMAGE_CLASSIFICATION: "image", self.Modality.TEXT_CLASSIFICATION: "text"}.get(
            self.modality, "function"
        )


class TaskSpec(CatalogEntry):
    """A reproducible few-shot task family over one domain.

    ``split`` says which classes (or groups) are meta-train, meta-validation and
    meta-test: ``{"by": "group" | "class", "meta_train": [...], "meta_val": [...],
    "meta_test": [...]}``; for function domains ``{"by": "seed"}`` keeps the train and
    test task streams disjoint by seed. ``identity_hash`` covers everything that decides
    the episodes, so two models evaluated on specs with the same hash saw the same tasks.
    """

    domain = models.ForeignKey(SourceDomain, on_delete=models.PROTECT, related_name="task_specs")
    name = models.CharField(max_length=200)
    split = models.JSONField(default=dict)
    n_way = models.PositiveIntegerField()
    k_shot = models.PositiveIntegerField()
    query_size = models.PositiveIntegerField()
    within_group = models.BooleanField(default=False)
    seed = models.PositiveIntegerField(default=0)
    identity_hash = models.CharField(max_length=64, db_index=True)

    objects = TaskSpecQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name

    def is_visible_to(self, user) -> bool:
        """Visible itself, and over a domain the user may see (``TaskSpecQuerySet.visible_to``)."""
        return super().is_visible_to(user) and self.domain.is_visible_to(user)


class MetaModel(CatalogEntry):
    """A trained model: its weights (safetensors), how it was made, and where it came from."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    algorithm = models.CharField(max_length=40)
    architecture = models.CharField(max_length=40)
    hyperparameters = models.JSONField(default=dict, blank=True)
    trained_on = models.ManyToManyField(SourceDomain, related_name="models", blank=True)
    task_spec = models.ForeignKey(
        TaskSpec, null=True, blank=True, on_delete=models.PROTECT, related_name="models"
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The source model this one was transferred from.",
    )
    weights_file = models.CharField(max_length=500, blank=True, help_text="Artifact name of the weights.")
    weights_sha256 = models.CharField(max_length=64, blank=True)
    weights_size = models.PositiveBigIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name


class Evaluation(models.Model):
    """A measured result: a model on a target domain (or task spec) at a number of shots.

    ``mean`` and ``ci95`` are the metric's mean over ``episodes`` episodes and the half
    width of its 95% confidence interval; ``baseline_*`` is the same measurement for a
    model trained from scratch on identical episodes, where one was run, and
    ``gain_ci95`` the half-width of the paired confidence interval of the difference.
    """

    class Metric(models.TextChoices):
        ACCURACY = "accuracy", "Accuracy"
        MSE = "mse", "Mean squared error"
        LOG_LIKELIHOOD = "log_likelihood", "Log-likelihood"

    model = models.ForeignKey(MetaModel, on_delete=models.CASCADE, related_name="evaluations")
    target_domain = models.ForeignKey(SourceDomain, on_delete=models.PROTECT, related_name="evaluations")
    task_spec = models.ForeignKey(
        TaskSpec, null=True, blank=True, on_delete=models.PROTECT, related_name="evaluations"
    )
    shots = models.PositiveIntegerField()
    metric = models.CharField(max_length=40, choices=Metric.choices)
    mean = models.FloatField()
    ci95 = models.FloatField()
    episodes = models.PositiveIntegerField()
    baseline_mean = models.FloatField(null=True, blank=True)
    baseline_ci95 = models.FloatField(null=True, blank=True)
    gain_ci95 = models.FloatField(
        null=True, blank=True, help_text="95% CI half-width of the gain, paired over identical episodes."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(episodes__gte=1), name="evaluation_has_episodes"),
            models.CheckConstraint(condition=Q(ci95__gte=0), name="evaluation_ci_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.target_domain} ({self.shots}-shot {self.metric})"

    @property
    def gain(self) -> float | None:
        """How much better than the baseline, signed so that positive means the model helped."""
        if self.baseline_mean is None:
            return None
        difference = self.mean - self.baseline_mean
        return -difference if self.metric == self.Metric.MSE else difference

    @property
    def negative_transfer(self) -> bool:
        """The whole confidence interval of the gain lies below zero: the source made things worse."""
        return self.gain is not None and self.gain_ci95 is not None and self.gain + self.gain_ci95 < 0
