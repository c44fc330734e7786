"""Domain imports from an upload: small ones in the request, large ones as an ``import`` job.

The one place that decides. An upload of at most ``IMPORT_INLINE_MAX_BYTES`` (default
5 MiB) is imported in the request, in the heavy-work pool with the import deadline, as it
always was. A larger one would hold its request for minutes without a word (100,000
Omniglot-sized images take minutes to decode), so it is checked as far as that is cheap,
stored, and imported by a worker as a job whose page shows the files decoded so far.
A text file is always imported as a job, whatever its size: every text is embedded by the
sentence encoder, which belongs on a worker (see ``learning.services.text_domains``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from learning import heavy_work
from learning.domain_files import upload_name
from learning.models import SourceDomain, Visibility
from learning.services.domains import domain_import
from learning.text_files import is_text_file
from tasks_app.models import Job
from tasks_app.services import job_create_import


def domain_upload_import(
    *,
    owner,
    upload: Any,
    name: str,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
    citation: str = "",
    license: str = "",
) -> SourceDomain | Job:
    """Import an uploaded zip now and return the new domain, or queue it and return the import job.

    A text file (CSV, TSV, JSONL) is always a job: its texts are embedded on a worker.

    Either way bad input found before decoding raises the same ``InvalidInput`` (nothing
    written). An inline import may raise ``heavy_work``'s ``Busy`` or ``DeadlineExceeded``.
    """
    entry = {
        "name": name,
        "visibility": visibility,
        "description": description,
        "citation": citation,
        "license": license,
    }
    size = getattr(upload, "size", None)
    large = isinstance(size, int) and size > settings.IMPORT_INLINE_MAX_BYTES
    if large or is_text_file(upload_name(upload)):
        return job_create_import(owner=owner, upload=upload, **entry)
    return heavy_work.run_heavy(
        domain_import, source=upload, owner=owner, deadline_s=heavy_work.import_deadline_s(), **entry
    )
