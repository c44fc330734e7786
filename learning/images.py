"""One image file as the engine sees it: 28x28 grayscale uint8 with ink high; and thumbnails.

Used for every image a user sends: the files of an imported domain (``learning.domain_files``)
and a prediction's support and queries (``learning.predict``).

Each image becomes 28x28 grayscale uint8 with ink high (``learning.engine.data``): it is
flattened onto white where it has transparency, resized with Lanczos, and inverted when
its border is light (black ink on white paper, as Omniglot is). Its header is read first:
more than ``MAX_IMAGE_PIXELS`` pixels is refused before anything is decoded. A large image
is shrunk while it is decoded, to about ``DECODE_GAP`` times 28 pixels a side (JPEG decodes
at 1/2, 1/4 or 1/8 scale; other formats are reduced by whole factors right after
decoding), so the conversions and the resampling never run on the full-size picture.
Sides under ``2 * DECODE_GAP * 28`` = 224 pixels are not shrunk: such images (Omniglot's
105x105) are resampled from their full size, as they always were.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from learning.engine.data import IMAGE_SIZE
from learning.errors import InvalidInput

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Formats Pillow may open; others (EPS, which runs Ghostscript, among them) are refused."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""The largest image (width x height) decoded; bigger ones are refused before decoding."""
DECODE_GAP = 4
"""Large images are decoded down to at least this many times the 28-pixel side, then resampled."""
THUMBNAIL_SIZE = 56


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, field="source")


def _to_gray(image: Image.Image) -> Image.Image:
    """The image as mode ``L``: transparency flattened onto white, wide integer modes rescaled."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return image.convert("L")


def _shrunk(image: Image.Image) -> Image.Image:
    """The loaded ``image`` reduced by whole factors to at least ``DECODE_GAP * 28`` pixels a side.

    Images smaller than twice that are returned as they are. Modes Pillow cannot reduce
    (palette, bilevel, 16-bit) are converted first, keeping their transparency.
    """
    target = IMAGE_SIZE * DECODE_GAP
    factors = (max(1, image.width // target), max(1, image.height // target))
    if factors == (1, 1):
        return image
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.reduce(factors)


def normalize_image(data: bytes, *, name: str) -> np.ndarray:
    """Verify and decode one image file; return it as ``(28, 28)`` uint8 with ink high.

    Raises ``InvalidInput`` naming ``name`` when the bytes are not an image in
    ``IMAGE_FORMATS``, are damaged, or hold more than ``MAX_IMAGE_PIXELS`` pixels (checked
    on the header, before decoding).
    """
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            if probe.width * probe.height > MAX_IMAGE_PIXELS:
                raise _invalid(
                    f"{name}: image is {probe.width}x{probe.height} pixels, "
                    f"at most {MAX_IMAGE_PIXELS:,} allowed"
                )
            probe.verify()
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale when that still leaves the target size.
            image.draft(None, (IMAGE_SIZE * DECODE_GAP, IMAGE_SIZE * DECODE_GAP))
            image.load()
            gray = _to_gray(_shrunk(image))
    except InvalidInput:
        raise
    except UnidentifiedImageError as exc:
        raise _invalid(f"{name} is not an image in a known format ({', '.join(IMAGE_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise _invalid(
            f"{name}: image is too large, at most {MAX_IMAGE_PIXELS:,} pixels allowed ({exc})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, zlib.error) as exc:
        raise _invalid(f"{name} is not a readable image ({exc})") from exc
    if gray.width == 0 or gray.height == 0:
        raise _invalid(f"{name} is an empty image")
    pixels = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    resized = np.asarray(gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8)
    # A light border means dark ink on light paper: invert, so ink is high.
    return 255 - resized if border.mean() > 127.5 else resized.copy()


def thumbnail_png(image: np.ndarray, *, size: int = THUMBNAIL_SIZE) -> bytes:
    """A ``size`` x ``size`` PNG of one ink-high image, drawn ink dark on light like the original."""
    picture = Image.fromarray(255 - np.asarray(image, dtype=np.uint8), mode="L")
    buffer = io.BytesIO()
    picture.resize((size, size), Image.LANCZOS).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
