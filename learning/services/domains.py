"""Adding source domains: importing image data sets, and registering the built-in domains.

An image domain's normalized arrays (``learning.engine.data``) are stored as
``domains/<slug>/arrays.npz`` and one thumbnail per class as
``domains/<slug>/thumbs/<class index>.png`` in artifact storage. The files are written
first and the row last (``learning.services.domain_rows``): a failed import leaves
neither a row nor a file. An uploaded text file (CSV, TSV, JSONL) is a text domain,
imported by ``learning.services.text_domains``.

An upload too large to import within a request, and any text file, is staged instead
(``domain_upload_stage``): checked as far as that is cheap (a text file is read in full),
then stored as ``imports/<uuid>.zip`` (or ``.csv`` ...) for a job to import with ``domain_import``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.text import slugify

from learning import builtin_domains
from learning.artifacts import artifact_save_file
from learning.domain_files import (
    ImportLimits,
    check_zip,
    is_url,
    read_path,
    read_upload,
    read_url,
    spooled_upload,
    upload_name,
)
from learning.domain_layout import ProgressFn, StopFn
from learning.engine.data import ImageArrays, image_arrays_to_bytes
from learning.errors import InvalidInput
from learning.events import catalog_changed_on_commit
from learning.images import thumbnail_png
from learning.models import SourceDomain, Visibility
from learning.services.domain_rows import (
    URL_MAX,
    check_entry,
    check_new_content,
    class_group_rows,
    domain_row_create,
    free_slug,
)
from learning.services.text_domains import text_domain_import
from learning.text_files import is_text_file, read_text_file

logger = logging.getLogger(__name__)


def domain_import(
    *,
    source: Any,
    name: str,
    owner=None,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
    citation: str = "",
    license: str = "",
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SourceDomain:
    """Import an image domain from ``source`` and return its new catalog row (an uploaded text file:
    a text domain, see ``learning.services.text_domains``).

    ``source`` is a local path (``str`` or ``os.PathLike``) to a zip file or a folder, an
    http(s) URL (a ``str`` holding ``scheme://``) of a zip, or an uploaded file object
    (anything with ``.read()``, e.g. Django's ``UploadedFile``) holding a zip. Local paths
    are read as given, so only trusted callers (the command line) may pass them. See
    ``learning.domain_layout`` for the layouts accepted, ``learning.domain_files`` for the checks made.

    ``on_progress(done, total)`` hears of each image file decoded, and ``should_stop()``
    ends the import with ``learning.domain_layout.ImportStopped`` before anything is
    stored (a job's progress and cancel; see ``learning.domain_layout``).

    Raises ``InvalidInput`` (``field="name"`` or ``"source"``) for bad input, after
    which nothing has been written.
    """
    callbacks = {"on_progress": on_progress, "should_stop": should_stop}
    if _names_text_file(source):
        with _opened(source) as file:
            return text_domain_import(
                source=file,
                name=name,
                owner=owner,
                visibility=visibility,
                description=description,
                citation=citation,
                license=license,
                **callbacks,
            )
    name = check_entry(name=name, visibility=visibility, license=license)
    limits = ImportLimits.from_settings()
    source_url = ""
    if isinstance(source, str) and is_url(source):
        if len(source) > URL_MAX:
            raise InvalidInput(f"the URL is longer than {URL_MAX} characters", field="source")
        arrays = read_url(source, limits=limits, **callbacks)
        origin, source_url = SourceDomain.Origin.URL, source
    elif isinstance(source, str | os.PathLike):
        arrays = read_path(source, limits=limits, **callbacks)
        origin = SourceDomain.Origin.UPLOAD
    elif hasattr(source, "read"):
        arrays = read_upload(source, limits=limits, **callbacks)
        origin = SourceDomain.Origin.UPLOAD
    else:
        raise InvalidInput("give a zip file, a folder, an http(s) URL or an uploaded zip", field="source")
    return _image_domain_create(
        arrays=arrays,
        name=name,
        origin=origin,
        source_url=source_url,
        owner=owner,
        visibility=visibility,
        description=description,
        citation=citation,
        license=license,
    )


@dataclass(frozen=True)
class StagedUpload:
    """An upload stored for a later import: the checked entry name and where the zip waits."""

    name: str
    """The domain's name, stripped."""
    filename: str
    """The upload's own file name, which the import's messages call it by."""
    path: str
    """Its name in artifact storage, ``imports/<uuid>.zip``."""
    size: int
    sha256: str


IMPORT_UPLOADS = "imports"
"""The artifact folder where staged uploads wait for their import job."""


def domain_upload_stage(*, upload: Any, name: str, visibility: str, license: str) -> StagedUpload:
    """Check an upload as far as that is cheap, then store it for an import job to read.

    The checks are those ``domain_import`` makes before decoding anything: the name
    (free, with a letter or digit), the visibility, the license's length, and the
    archive's size and directory (``learning.domain_files.check_zip``). A failure raises
    the same ``InvalidInput`` as ``domain_import`` would, and nothing is written. The
    stored file's name is made of a fresh uuid only; whoever imports it deletes it.
    """
    name = check_entry(name=name, visibility=visibility, license=license)
    limits = ImportLimits.from_settings()
    filename = upload_name(upload)
    text = is_text_file(filename)
    with spooled_upload(upload, limits=limits) as spool:
        if text:
            read_text_file(spool, name=filename, max_bytes=limits.max_bytes, max_rows=limits.max_files)
            spool.seek(0)
        else:
            check_zip(spool, limits=limits, source=filename)
        suffix = os.path.splitext(filename)[1].lower() if text else ".zip"
        stored = artifact_save_file(f"{IMPORT_UPLOADS}/{uuid.uuid4().hex}{suffix}", spool)
    return StagedUpload(
        name=name, filename=filename, path=stored.name, size=stored.size, sha256=stored.sha256
    )


def function_domain_create(
    *,
    name: str,
    generator: dict,
    origin: str = SourceDomain.Origin.BUILTIN,
    owner=None,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
    citation: str = "",
    license: str = "",
) -> SourceDomain:
    """Create a function-regression domain from a generator such as ``builtin_domains.SINUSOID_GENERATOR``.

    Its content hash is that of the generator's canonical JSON, so two domains cannot
    hold the same generator. Class and example counts stay 0.
    """
    name = check_entry(name=name, visibility=visibility, license=license)
    family = generator.get("family") if isinstance(generator, dict) else None
    if family not in builtin_domains.FUNCTION_FAMILIES:
        known = ", ".join(builtin_domains.FUNCTION_FAMILIES)
        raise InvalidInput(f"unknown function family {family!r}; known: {known}", field="generator")
    try:
        sha256 = builtin_domains.generator_sha256(generator)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the generator is not plain JSON ({exc})", field="generator") from exc
    check_new_content(sha256, owner)
    try:
        with transaction.atomic():
            catalog_changed_on_commit()
            return SourceDomain.objects.create(
                name=name,
                slug=free_slug(name),
                modality=SourceDomain.Modality.FUNCTION_REGRESSION,
                description=description,
                citation=citation,
                license=license,
                origin=origin,
                content_sha256=sha256,
                generator=generator,
                owner=owner,
                visibility=visibility,
            )
    except IntegrityError as exc:
        raise InvalidInput(
            f"a domain named {name!r} or with this generator was just added", field="name"
        ) from exc


def builtin_domains_register() -> list[SourceDomain]:
    """Make sure the built-in domains exist; return them all, whether new or already there.

    Idempotent: a built-in already in the catalog is left as it is. A user's domain that
    holds a built-in's name or content keeps it, and that built-in is skipped with a warning.
    """
    registered: list[SourceDomain] = []
    for spec in builtin_domains.BUILTIN_DOMAINS:
        existing = SourceDomain.objects.filter(Q(name=spec.name) | Q(slug=slugify(spec.name))).first()
        if existing is not None:
            if existing.origin == SourceDomain.Origin.BUILTIN:
                registered.append(existing)
            else:
                logger.warning("built-in domain %r skipped: a user's domain holds that name", spec.name)
            continue
        common = {"name": spec.name, "description": spec.description, "citation": spec.citation}
        try:
            if spec.generator:
                domain = function_domain_create(**common, generator=spec.generator, license=spec.license)
            else:
                domain = _image_domain_create(
                    **common,
                    arrays=builtin_domains.digits_arrays(),
                    origin=SourceDomain.Origin.BUILTIN,
                    source_url=spec.source_url,
                    owner=None,
                    visibility=Visibility.PUBLIC,
                    license=spec.license,
                )
        except InvalidInput as err:
            logger.warning("built-in domain %r skipped: %s", spec.name, err.message)
            continue
        registered.append(domain)
    return registered


# --- Helpers ---------------------------------------------------------------------------


def _names_text_file(source: Any) -> bool:
    """Whether ``source`` (a local path or an upload; never a URL) is a text file by its name."""
    if isinstance(source, str) and is_url(source):
        return False
    if isinstance(source, str | os.PathLike):
        return is_text_file(str(source))
    return hasattr(source, "read") and is_text_file(upload_name(source))


@contextmanager
def _opened(source: Any) -> Iterator[Any]:
    """An upload as it is, or a local path opened for reading (a missing file is ``InvalidInput``)."""
    if hasattr(source, "read"):
        yield source
        return
    try:
        file = open(source, "rb")  # noqa: SIM115 (closed when the block ends)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror}", field="source") from exc
    with file:
        yield file


def _first_examples(arrays: ImageArrays) -> list[int]:
    return [int(indices[0]) for indices in arrays.indices_by_class()]


def _image_domain_create(
    *,
    arrays: ImageArrays,
    name: str,
    owner,
    **entry: Any,
) -> SourceDomain:
    """Store the arrays and thumbnails, then write the row (``domain_row_create``)."""
    payload = image_arrays_to_bytes(arrays)
    sha256 = hashlib.sha256(payload).hexdigest()
    check_new_content(sha256, owner)
    slug = free_slug(name)
    counts = arrays.class_counts()
    files = {f"domains/{slug}/arrays.npz": payload}
    for index, example in enumerate(_first_examples(arrays)):
        files[f"domains/{slug}/thumbs/{index}.png"] = thumbnail_png(arrays.images[example])
    return domain_row_create(
        files=files,
        name=name,
        slug=slug,
        owner=owner,
        modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        content_sha256=sha256,
        class_count=arrays.num_classes,
        example_count=int(counts.sum()),
        classes=[
            {"name": n, "group": g, "count": int(c)}
            for n, g, c in zip(arrays.class_names, arrays.class_groups, counts, strict=True)
        ],
        class_groups=class_group_rows(arrays.class_groups),
        **entry,
    )
