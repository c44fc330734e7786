"""Quick test data: tiny zips and folders of PNG images, and real domains made through the services.

    make_image_zip(tmp_path / "x.zip", {"a": 3, "b": 3})             # a/0.png ... b/2.png
    make_image_zip(tmp_path, {"a": 3, "b": 3}, groups=True)          # group-a/a/..., group-b/b/...
    make_image_folder(tmp_path / "set", {"greek/alpha": 2, "greek/beta": 2, "latin/a": 2})
    image_domain(owner=user, visibility="private")                    # 5 classes x 4 images, imported
    function_domain(family="gp-1d")                                   # the built-in gp-1d generator

Images are 20x20 PNGs with a dark stroke on white paper (``ink="light"`` for a light
stroke on black). Every image differs, and ``variant`` changes them all, so two zips
with different variants never hold the same content.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from learning import builtin_domains
from learning.models import SourceDomain
from learning.services.domains import domain_import, function_domain_create

_variants = itertools.count(1000)


def png_bytes(seed: int, *, size: int = 20, ink: str = "dark") -> bytes:
    """A ``size`` x ``size`` grayscale PNG with one random stroke, the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    paper, pen = (255, 0) if ink == "dark" else (0, 255)
    image = Image.new("L", (size, size), paper)
    points = [tuple(int(v) for v in rng.integers(3, size - 3, 2)) for _ in range(4)]
    ImageDraw.Draw(image).line(points, fill=pen, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_paths(classes: dict[str, int], groups: bool) -> list[str]:
    """``<class>/<i>.png`` paths; with ``groups``, plain class names alternate between two groups."""
    paths = []
    for index, (cls, count) in enumerate(classes.items()):
        folder = cls if ("/" in cls or not groups) else f"group-{'ab'[index % 2]}/{cls}"
        paths += [f"{folder}/{i}.png" for i in range(count)]
    return paths


def image_files(
    classes: dict[str, int], groups: bool = False, *, variant: int = 0, ink: str = "dark"
) -> dict[str, bytes]:
    """The relative paths and PNG bytes of a small image set (see ``make_image_zip``)."""
    return {
        path: png_bytes(variant * 1_000_003 + n, ink=ink)
        for n, path in enumerate(_image_paths(classes, groups))
    }


def make_image_zip(
    path: Path,
    classes: dict[str, int],
    groups: bool = False,
    *,
    wrapper: str = "",
    extra: dict[str, bytes] | None = None,
    variant: int = 0,
    ink: str = "dark",
) -> Path:
    """Write a zip of ``classes`` (name -> number of images) and return its path.

    ``path`` is the zip file, or a folder to write ``images.zip`` in. Class names with a
    ``/`` are ``<group>/<class>``; with ``groups=True`` plain names are spread over two
    groups. ``wrapper`` puts everything in one top-level folder; ``extra`` adds raw
    entries (junk, non-images). Folder entries are written too, as zip tools do.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "images.zip"
    files = image_files(classes, groups, variant=variant, ink=ink)
    prefix = f"{wrapper}/" if wrapper else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        folders = sorted({p.rsplit("/", 1)[0] for p in files} | {p.split("/", 1)[0] for p in files})
        if wrapper:
            archive.writestr(f"{wrapper}/", b"")
        for folder in folders:
            archive.writestr(f"{prefix}{folder}/", b"")
        for name, content in files.items():
            archive.writestr(prefix + name, content)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return path


def make_image_folder(
    path: Path, classes: dict[str, int], groups: bool = False, *, variant: int = 0, ink: str = "dark"
) -> Path:
    """Write the same images as ``make_image_zip`` into folders under ``path``; return ``path``."""
    path = Path(path)
    for name, content in image_files(classes, groups, variant=variant, ink=ink).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return path


def image_domain(
    *,
    name: str | None = None,
    classes: dict[str, int] | None = None,
    groups: bool = False,
    **kwargs,
) -> SourceDomain:
    """A real image domain imported through ``domain_import`` (default: 5 classes of 4 images).

    Other keyword arguments (``owner``, ``visibility``, ``description``...) go to
    ``domain_import``. Each call makes different images, so domains never collide.
    """
    variant = next(_variants)
    classes = classes or {f"class-{i}": 4 for i in range(5)}
    with tempfile.TemporaryDirectory() as folder:
        archive = make_image_zip(Path(folder), classes, groups, variant=variant)
        return domain_import(source=archive, name=name or f"Test images {variant}", **kwargs)


def function_domain(
    *, name: str | None = None, family: str = "sinusoid", generator: dict | None = None, **kwargs
) -> SourceDomain:
    """A function-regression domain with ``generator`` (default: the built-in one of ``family``).

    Two domains cannot share a generator: pass ``generator=`` for a second one of a
    family, or after ``builtin_domains_register()``. Other keyword arguments go to
    ``function_domain_create``.
    """
    if generator is None:
        defaults = {"sinusoid": builtin_domains.SINUSOID_GENERATOR, "gp-1d": builtin_domains.GP_1D_GENERATOR}
        generator = dict(defaults[family])
    return function_domain_create(
        name=name or f"Test {family} {next(_variants)}", generator=generator, **kwargs
    )
