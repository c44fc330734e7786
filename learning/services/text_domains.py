"""Importing a text domain: a labeled CSV/TSV/JSONL file, each text embedded once, stored as ``TextArrays``.

The file is read and checked by ``learning.text_files`` (nothing is written for a bad
one); then every text goes through the frozen sentence encoder
(``learning.engine.text_encoder``, loaded offline from its package) and the embeddings
are stored as ``domains/<slug>/arrays.npz``. The row keeps each label's count and its
first few texts (``classes[i]["examples"]``) for the domain's page.

Embedding takes minutes for large files and loads the encoder (seconds, ~100 MB), so it
runs on a worker: the site always imports text files as ``import`` jobs, which report
the texts embedded so far. The content hash is that of the checked texts and labels, not
of the embeddings, so the same file is the same content on any machine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from learning.domain_files import ImportLimits, upload_name
from learning.domain_layout import ImportStopped, ProgressFn, StopFn
from learning.engine.data import text_arrays_to_bytes
from learning.models import SourceDomain, Visibility
from learning.services.domain_rows import (
    check_entry,
    check_new_content,
    class_group_rows,
    domain_row_create,
    free_slug,
)
from learning.text_files import TextRecords, read_text_file

EXAMPLES_KEPT = 3
"""Texts per label kept on the row for the domain's page."""
EXAMPLE_CHARS = 300


def records_sha256(records: TextRecords) -> str:
    """The content hash of a text domain: its texts with their labels and groups, canonical JSON."""
    canonical = json.dumps(
        [records.class_names, records.class_groups, records.texts, records.labels.tolist()],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def text_domain_import(
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
    """Import the text file ``source`` (an upload or open file with ``.read()`` and a ``.name``).

    ``on_progress(done, total)`` hears of the texts embedded so far; ``should_stop()``
    ends the import with ``ImportStopped`` before anything is stored. Raises
    ``InvalidInput`` for a bad entry or file, after which nothing has been written.
    """
    # The encoder's libraries take seconds to import: only a text import pays for them.
    from learning.engine.text_encoder import EmbeddingStopped, embed_domain

    name = check_entry(name=name, visibility=visibility, license=license)
    limits = ImportLimits.from_settings()
    records = read_text_file(
        source, name=upload_name(source), max_bytes=limits.max_bytes, max_rows=limits.max_files
    )
    sha256 = records_sha256(records)
    check_new_content(sha256, owner)
    try:
        arrays = embed_domain(
            records.texts,
            records.labels,
            records.class_names,
            records.class_groups,
            on_progress=None if on_progress is None else lambda e: on_progress(e["done"], e["total"]),
            should_stop=should_stop,
        )
    except EmbeddingStopped as stop:
        raise ImportStopped(stop.done, stop.total) from stop
    slug = free_slug(name)
    counts = arrays.class_counts()
    firsts = [indices[:EXAMPLES_KEPT] for indices in arrays.indices_by_class()]
    return domain_row_create(
        files={f"domains/{slug}/arrays.npz": text_arrays_to_bytes(arrays)},
        name=name,
        slug=slug,
        owner=owner,
        modality=SourceDomain.Modality.TEXT_CLASSIFICATION,
        content_sha256=sha256,
        class_count=arrays.num_classes,
        example_count=int(counts.sum()),
        classes=[
            {
                "name": n,
                "group": g,
                "count": int(c),
                "examples": [records.texts[i][:EXAMPLE_CHARS] for i in first],
            }
            for n, g, c, first in zip(arrays.class_names, arrays.class_groups, counts, firsts, strict=True)
        ],
        class_groups=class_group_rows(arrays.class_groups),
        origin=SourceDomain.Origin.UPLOAD,
        source_url="",
        visibility=visibility,
        description=description,
        citation=citation,
        license=license,
    )
