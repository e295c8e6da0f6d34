"""Bot avatars: decide the type from the bytes, refuse bombs, crop to a square and re-encode.

Nothing the uploader sent is stored as is: the image is decoded by Pillow (only the PNG, JPEG, WEBP and GIF
decoders are allowed to try), cropped to ``settings.avatar_size_px`` square and written out fresh, so metadata,
trailing payloads and polyglot tricks are dropped. This module is pure and synchronous; callers run it in a
worker thread.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError, features

from bot_runtime.i18n import N_
from control_plane.kit.errors import PayloadTooLarge, ValidationFailed
from control_plane.settings import get_settings

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# Decoding allocates width x height x 4 bytes before we can shrink it; 4096 x 4096 RGBA is 64 MB, the most one
# upload may cost. JPEGs are decoded at a reduced scale first (draft mode), so big phone photos still fit.
MAX_SOURCE_PIXELS = 4096 * 4096
NOT_AN_IMAGE = N_("Upload a PNG, JPEG, WEBP or GIF image.")


@dataclass(frozen=True, slots=True)
class ProcessedAvatar:
    data: bytes
    mime: str


def _invalid() -> ValidationFailed:
    return ValidationFailed(NOT_AN_IMAGE, fields=[("file", NOT_AN_IMAGE)])


def max_avatar_megabytes() -> str:
    """The upload limit as shown to people ("2", "1.5"), the same on the form and in the error."""
    return f"{round(get_settings().max_avatar_bytes / (1024 * 1024), 1):g}"


def too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        N_("The image is too large. The limit is %(megabytes)s MB."),
        params={"megabytes": max_avatar_megabytes()},
        fields=[("file", N_("This file is too large."))],
    )


def process_avatar(raw: bytes) -> ProcessedAvatar:
    """Validate and normalise an uploaded avatar; raises a 413 or 422 AppError for anything unacceptable."""
    settings = get_settings()
    if len(raw) > settings.max_avatar_bytes:
        raise too_large()
    if not raw:
        raise _invalid()
    size = settings.avatar_size_px
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two bomb thresholds; any such image is far beyond what we accept.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=ALLOWED_FORMATS) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (size, size))
                width, height = image.size
                if width < 1 or height < 1 or width * height > MAX_SOURCE_PIXELS:
                    raise _invalid()
                image.seek(0)  # the first frame of an animation
                image.load()
                image = ImageOps.exif_transpose(image)
                has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
                square = ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        ValueError,
        SyntaxError,  # some Pillow decoders report corrupt data this way
        EOFError,
    ):
        raise _invalid() from None
    out = io.BytesIO()
    if features.check("webp"):
        square.save(out, format="WEBP", quality=85, method=4)
        return ProcessedAvatar(out.getvalue(), "image/webp")
    square.save(out, format="PNG", optimize=True)
    return ProcessedAvatar(out.getvalue(), "image/png")
