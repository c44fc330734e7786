"""The Job table: one row per launched piece of work, and the single truth about its state.

Workers update it through ``tasks_app.lifecycle`` and the progress recorder; pages and
websockets read it. Channel-layer events are only a fast path on top of it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from learning.text_files import is_text_file


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> JobQuerySet:
        """A user sees their own jobs (superusers see all); anonymous users see none."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self if user.is_superuser else self.filter(owner=user)

    def that_trained(self, model) -> JobQuerySet:
        """The jobs that trained ``model`` (meta-training or transfer); an evaluation job links it too."""
        return self.filter(result_model=model, kind__in=[Job.Kind.META_TRAIN, Job.Kind.TRANSFER])


class Job(models.Model):
    """A meta-training, transfer, evaluation or domain-import run, from queued to a final status."""

    class Kind(models.TextChoices):
        META_TRAIN = "meta_train", "Meta-train"
        EVALUATE = "evaluate", "Evaluate"
        TRANSFER = "transfer", "Transfer"
        IMPORT = "import", "Import"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    config = models.JSONField(help_text="The validated config the worker runs.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    domain = models.ForeignKey(
        "learning.SourceDomain",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
        help_text="The domain the job runs on; an import job's is the domain it created, once it succeeds.",
    )
    task_spec = models.ForeignKey(
        "learning.TaskSpec", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    source_model = models.ForeignKey(
        "learning.MetaModel",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs_as_source",
        help_text="The model an evaluate or transfer job starts from.",
    )

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(
        default=dict, blank=True, help_text="The latest progress event's loss and metrics."
    )
    eta_seconds = models.FloatField(null=True, blank=True)
    history = models.JSONField(default=list, blank=True, help_text="Downsampled metric history for charts.")
    phase = models.CharField(max_length=200, blank=True, help_text="What the worker is doing now.")
    phase_done = models.PositiveIntegerField(
        default=0, help_text="Units of the current phase done (evaluation episodes); 0 while training."
    )
    phase_total = models.PositiveIntegerField(default=0, help_text="Units the current phase has in all.")
    event_seq = models.PositiveBigIntegerField(default=0, help_text="Sequence number of the last event sent.")

    queue = models.CharField(max_length=40)
    worker_host = models.CharField(max_length=200, blank=True)
    worker_pid = models.PositiveIntegerField(
        null=True, blank=True, help_text="The process on worker_host that runs the job."
    )
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)

    log = models.JSONField(
        default=list,
        blank=True,
        help_text="Lifecycle entries ({at, message}): attempts, resumptions, lost workers.",
    )

    error_summary = models.CharField(max_length=500, blank=True)
    error_traceback = models.TextField(blank=True)

    result_model = models.ForeignKey(
        "learning.MetaModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    result_evaluations = models.ManyToManyField("learning.Evaluation", blank=True, related_name="jobs")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.kind}, {self.status})"

    @property
    def title(self) -> str:
        """What the job makes: its model's name, or "import of <name>" for a domain import."""
        if self.kind == self.Kind.IMPORT:
            return f"import of {self.config.get('name', '')}"
        return self.config.get("model_name", "")

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from start to finish (to now while running); None before it started."""
        if self.started_at is None:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def phase_unit(self) -> str:
        """What the current phase counts, in words: texts or image files (imports), else episodes."""
        if self.kind != self.Kind.IMPORT:
            return "episode"
        return "text" if is_text_file(str(self.config.get("filename", ""))) else "image file"

    @property
    def phase_percent(self) -> float:
        return 100.0 * self.phase_done / self.phase_total if self.phase_total else 0.0

    @property
    def progress_percent(self) -> float:
        return 100.0 * self.step / self.total_steps if self.total_steps else 0.0
