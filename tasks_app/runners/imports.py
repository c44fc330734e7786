"""``import`` jobs: a staged upload imported as an inline import would; the phase counts files decoded."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.files import File

from learning.artifacts import artifact_storage
from learning.domain_layout import ImportStopped
from learning.engine.progress import ProgressMeter
from learning.errors import InvalidInput
from learning.models import SourceDomain
from learning.services.domains import domain_import
from tasks_app.lifecycle import job_fail
from tasks_app.models import Job
from tasks_app.runners.base import JobRunner


class ImportRunner(JobRunner):
    """Imports the job's staged upload; the job links the new domain.

    Bad content fails the job with the inline import's message; a cancel ends it before
    anything is stored. The staged upload is deleted when the job ends, either way.
    """

    kind = Job.Kind.IMPORT
    phase = "importing"

    def run(self) -> None:
        job, config = self.job, self.job.config
        earlier = SourceDomain.objects.filter(
            owner=job.owner, name=config["name"], created_at__gte=job.created_at
        ).first()
        if earlier is not None:
            # An earlier attempt imported it, and its worker was lost before it could say so.
            self._succeed_with(earlier)
            return
        try:
            with artifact_storage().open(config["upload"], "rb") as stored:
                domain = domain_import(
                    source=File(stored, name=config["filename"]),
                    owner=job.owner,
                    **{k: config[k] for k in ("name", "visibility", "description", "citation", "license")},
                    on_progress=self._on_files_decoded(),
                    should_stop=self.should_stop,
                )
        except ImportStopped:
            self.stopped()
            return
        except InvalidInput as err:
            job_fail(job, err.message[:500], "")
            return
        self._succeed_with(domain)

    def _on_files_decoded(self) -> Callable[[int, int], None]:
        """``on_progress(done, total)`` for the import: the phase's files, with an ETA."""
        meter: ProgressMeter | None = None

        def on_progress(done: int, total: int) -> None:
            nonlocal meter
            meter = meter or ProgressMeter(total, done=done)  # the rate counts from the first decoded file
            eta = meter.eta_seconds(done, time.monotonic())
            self.recorder.phase_progress(phase="importing", done=done, total=total, eta=eta)

        return on_progress

    def _succeed_with(self, domain: SourceDomain) -> None:
        self.job.domain = domain
        self.job.save(update_fields=["domain"])
        self.succeed()
