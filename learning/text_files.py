"""Reading a user's labeled text data set (CSV or JSON Lines) into ``TextRecords``.

Two formats, told apart by the file name (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``) or,
without one, by the first character (``{`` is JSON Lines):

- CSV (or TSV) with a header row naming the columns ``text`` and ``label`` and,
  optionally, ``group`` (any order, any case; other columns are ignored);
- JSON Lines: one object per line with ``"text"`` (a string), ``"label"`` (a string or an
  integer) and, optionally, ``"group"`` (a string); blank lines are skipped.

Everything is checked before a domain is written, and every problem raises
``InvalidInput`` (``field="source"``) naming the row or line: the byte size before
anything is read, UTF-8 (a leading byte-order mark is allowed), the number of rows,
empty or overlong texts and labels, a label given two groups, and a file with fewer
than two labels. Examples keep their order within a label; labels are sorted, so the
same file gives the same records on any machine.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from learning.domain_layout import invalid_source

MAX_TEXT_CHARS = 5_000
"""Longest text kept (the encoder reads about the first 256 word pieces of it anyway)."""
MAX_LABEL_CHARS = 100
MAX_ROWS = 100_000
FORMAT_OF_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""The formats, by file name suffix."""


def is_text_file(name: str) -> bool:
    """Whether a file of this name is a text data set (an import of anything else is a zip of images)."""
    return name.lower().endswith(tuple(FORMAT_OF_SUFFIX))


@dataclass(frozen=True)
class TextRecords:
    """A labeled text data set: ``texts[i]`` has label ``class_names[labels[i]]``.

    ``labels`` is ``(N,)`` int64; ``class_groups[c]`` is the group of class ``c`` (``""``
    where the file gives none). Examples are ordered by class, then by their order in
    the file.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    class_groups: tuple[str, ...]


def text_format(name: str, head: bytes) -> str:
    """``csv``, ``tsv`` or ``jsonl``: from the file ``name``'s extension, else from its first byte."""
    lowered = name.lower()
    for suffix, fmt in FORMAT_OF_SUFFIX.items():
        if lowered.endswith(suffix):
            return fmt
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def read_text_file(file: IO[bytes], *, name: str, max_bytes: int, max_rows: int = MAX_ROWS) -> TextRecords:
    """The records of one CSV/TSV/JSONL file of at most ``max_bytes`` bytes; ``InvalidInput`` if not."""
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise invalid_source(f"{name} is larger than {max_bytes // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise invalid_source(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded"
        ) from exc
    fmt = text_format(name, data[:64])
    rows = _jsonl_rows(text, name, max_rows) if fmt == "jsonl" else _csv_rows(text, name, fmt, max_rows)
    return _records(rows, name)


Row = tuple[str, str, str, str]
"""(where, text, label, group): ``where`` names the row in messages, e.g. ``line 12``."""


def _csv_rows(text: str, name: str, fmt: str, max_rows: int) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",", strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise invalid_source(f"{name} is empty")
        columns = {h.strip().lower(): i for i, h in enumerate(header)}
        for required in ("text", "label"):
            if required not in columns:
                raise invalid_source(
                    f"{name} has no {required!r} column: its header row must name the columns text and "
                    f"label (and optionally group), found {', '.join(repr(h) for h in header[:6]) or 'none'}"
                )
        rows: list[Row] = []
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue
            where = f"row {reader.line_num}"
            if len(rows) >= max_rows:
                raise invalid_source(f"{name} has more than {max_rows} rows")
            cells = (
                record[i] if (i := columns.get(c)) is not None and i < len(record) else ""
                for c in ("text", "label", "group")
            )
            rows.append((where, *cells))
    except csv.Error as exc:
        raise invalid_source(f"{name} is not valid CSV near row {reader.line_num}: {exc}") from exc
    return rows


def _jsonl_rows(text: str, name: str, max_rows: int) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        if len(rows) >= max_rows:
            raise invalid_source(f"{name} has more than {max_rows} rows")
        try:
            item: Any = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise invalid_source(f"{name} {where} is not JSON: {exc}") from exc
        if not isinstance(item, dict):
            raise invalid_source(f'{name} {where} must be an object {{"text": ..., "label": ...}}')
        text_value, label, group = item.get("text"), item.get("label"), item.get("group", "")
        if not isinstance(text_value, str):
            raise invalid_source(f'{name} {where}: "text" must be a string')
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise invalid_source(f'{name} {where}: "label" must be a string or an integer')
        if group is None:
            group = ""
        if not isinstance(group, str):
            raise invalid_source(f'{name} {where}: "group" must be a string')
        rows.append((where, text_value, str(label), group))
    return rows


def _records(rows: list[Row], name: str) -> TextRecords:
    by_label: dict[str, list[str]] = {}
    group_of: dict[str, str] = {}
    for where, raw_text, raw_label, raw_group in rows:
        text, label, group = raw_text.strip(), raw_label.strip(), raw_group.strip()
        if not text:
            raise invalid_source(f"{name} {where}: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise invalid_source(f"{name} {where}: the text is longer than {MAX_TEXT_CHARS} characters")
        if not label:
            raise invalid_source(f"{name} {where}: the label is empty")
        if len(label) > MAX_LABEL_CHARS:
            raise invalid_source(f"{name} {where}: the label is longer than {MAX_LABEL_CHARS} characters")
        if group_of.setdefault(label, group) != group:
            raise invalid_source(
                f"{name} {where}: label {label!r} is in group {group!r} here but in "
                f"{group_of[label]!r} before; a label belongs to one group"
            )
        by_label.setdefault(label, []).append(text)
    if not by_label:
        raise invalid_source(f"{name} holds no examples")
    if len(by_label) < 2:
        raise invalid_source(
            f"{name} has only one label ({next(iter(by_label))}); a domain needs at least 2 labels"
        )
    names = tuple(sorted(by_label))
    texts = tuple(t for label in names for t in by_label[label])
    labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(by_label[n]) for n in names])
    return TextRecords(texts, labels, names, tuple(group_of[n] for n in names))
