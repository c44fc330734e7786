"""Writing a new domain's row: the checks every import makes, its slug, and its files then its row.

``domain_row_create`` writes the files first and the row last, inside a transaction; if
anything fails, the files are deleted again, so a failed import leaves neither a row nor
a file. Image and text imports (``learning.services.domains``, ``learning.services.text_domains``)
both end here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from learning.artifacts import artifact_save, artifact_storage, artifacts_delete
from learning.errors import InvalidInput
from learning.events import catalog_changed_on_commit
from learning.models import SourceDomain, Visibility

_NAME_MAX = SourceDomain._meta.get_field("name").max_length
_LICENSE_MAX = SourceDomain._meta.get_field("license").max_length
URL_MAX = SourceDomain._meta.get_field("source_url").max_length


def check_entry(*, name: str, visibility: str, license: str) -> str:
    """Validate the catalog text of a new domain; return the stripped name."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("a domain needs a name", field="name")
    if len(name) > _NAME_MAX:
        raise InvalidInput(f"the name is longer than {_NAME_MAX} characters", field="name")
    if not slugify(name):
        raise InvalidInput(f"the name {name!r} needs at least one letter or digit", field="name")
    if SourceDomain.objects.filter(name__iexact=name).exists():
        raise InvalidInput(f"a domain named {name!r} already exists", field="name")
    if visibility not in Visibility.values:
        raise InvalidInput(f"visibility must be one of {', '.join(Visibility.values)}", field="visibility")
    if len(license) > _LICENSE_MAX:
        raise InvalidInput(f"the license is longer than {_LICENSE_MAX} characters", field="license")
    return name


def check_new_content(sha256: str, owner) -> None:
    """Refuse content the importing user can already see; a copy they cannot see is not named."""
    same = SourceDomain.objects.visible_to(owner).filter(content_sha256=sha256).first()
    if same is not None:
        raise InvalidInput(
            f"this content is already in the catalog as domain {same.name!r} ({same.slug})", field="source"
        )


def _slug_folder_used(slug: str) -> bool:
    """Whether files already sit under ``domains/<slug>/`` (left by a domain deleted earlier)."""
    storage = artifact_storage()
    pending = [f"domains/{slug}"]
    while pending:
        folder = pending.pop()
        try:
            folders, files = storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if files:
            return True
        pending.extend(f"{folder}/{sub}" for sub in folders)
    return False


RESERVED_SLUGS = frozenset({"new"})
"""Slugs that page URLs use (``/domains/new/``), so no domain may take them."""


def free_slug(name: str) -> str:
    """``slugify(name)``, with ``-2``, ``-3``... appended while a row, stray files or a page URL hold it."""
    base = slugify(name)[:190] or "domain"
    slug, n = base, 1
    while (
        slug in RESERVED_SLUGS or SourceDomain.objects.filter(slug=slug).exists() or _slug_folder_used(slug)
    ):
        n += 1
        slug = f"{base}-{n}"
    return slug


def class_group_rows(class_groups: Sequence[str]) -> list[dict[str, Any]]:
    """``SourceDomain.class_groups``: each distinct non-empty group, sorted, with its class count."""
    return [
        {"name": group, "class_count": sum(1 for g in class_groups if g == group)}
        for group in sorted({g for g in class_groups if g})
    ]


def domain_row_create(*, files: dict[str, bytes], name: str, **row: Any) -> SourceDomain:
    """Store ``files`` (artifact name -> bytes; the first is the arrays file), then write the row.

    ``row`` holds the other fields of the ``SourceDomain``. A name or content another import
    took meanwhile raises ``InvalidInput``; any failure deletes the files stored so far.
    """
    stored: list[str] = []
    try:
        for artifact_name, content in files.items():
            saved = artifact_save(artifact_name, content)
            stored.append(saved.name)
            if saved.name != artifact_name:
                raise InvalidInput(
                    f"another import of a domain named {name!r} is running; try again", field="name"
                )
        with transaction.atomic():
            domain = SourceDomain.objects.create(
                name=name, arrays_file=stored[0], arrays_size=len(next(iter(files.values()))), **row
            )
            catalog_changed_on_commit()
    except IntegrityError as exc:
        artifacts_delete(stored)
        raise InvalidInput(
            f"a domain named {name!r} or with the same content was just added", field="name"
        ) from exc
    except BaseException:
        artifacts_delete(stored)
        raise
    return domain
