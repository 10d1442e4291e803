"""Gemini's image parts: an Image as ``inlineData {mimeType, data}`` (base64 bytes) or
``fileData {mimeType, fileUri}`` (a ``gs://`` object or a Gemini File API file), with the
formats and the inline size Gemini takes checked before anything is sent.

Verified against google-genai 3.6 (``types.Blob``, ``types.FileData``, ``models.py``
``_Part_to_mldev``) and ai.google.dev's image-understanding and file-input pages: PNG, JPEG,
WEBP, HEIC and HEIF (not GIF, BMP or AVIF); inline data up to 100 MB per request (20 MB
before January 2026; larger files go through the File API). Gemini has no per-image
``detail``: it is left out.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Sequence
from urllib.parse import urlsplit

from flyllm._display import mask_url
from flyllm.errors import InvalidRequestError
from flyllm.types import Image, Message, sniff_media_type

__all__ = [
    "FILE_API_HOST",
    "IMAGE_TYPES",
    "MAX_INLINE_BYTES",
    "accepts_image_url",
    "check_inline_size",
    "image_part",
    "user_parts",
]

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
"""The image media types Gemini reads."""

MAX_INLINE_BYTES = 100 * 1000 * 1000
"""The most base64 image data one request may carry inline (Gemini's request limit)."""

FILE_API_HOST = "generativelanguage.googleapis.com"
"""The host of Gemini File API URIs (``https://{host}/v1beta/files/{id}``)."""


def accepts_image_url(url: str) -> bool:
    """True for the image URLs Gemini fetches itself: ``gs://`` objects and Gemini File API
    URIs. Any other URL (a plain https one included) must be downloaded and sent inline: a
    URL scheme alone cannot tell a File API URI from another https URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "gs":
        return bool(parts.netloc)
    if scheme != "https" or (parts.hostname or "") != FILE_API_HOST:
        return False
    segments = [s for s in parts.path.split("/") if s]
    return len(segments) == 3 and segments[0].startswith("v1") and segments[1] == "files"


def user_parts(m: Message) -> list[dict[str, object]]:
    """A user turn's parts: its text, or its ordered text and image parts."""
    if not m.parts:
        return [{"text": m.content}]
    out: list[dict[str, object]] = []
    for part in m.parts:
        if isinstance(part, Image):
            out.append(image_part(part))
        elif part:
            out.append({"text": part})
    return out or [{"text": ""}]


def image_part(image: Image) -> dict[str, object]:
    """The part for one image; InvalidRequestError for a format Gemini does not read or a
    URL it does not fetch."""
    if image.data is None:
        return _file_part(image.url or "", image.media_type)
    media_type = _checked_type(image.media_type or sniff_media_type(image.data), "the bytes")
    data = base64.b64encode(image.data).decode("ascii")
    return {"inlineData": {"mimeType": media_type, "data": data}}


def _file_part(url: str, media_type: str | None) -> dict[str, object]:
    shown = _shown(url)
    if not accepts_image_url(url):
        raise InvalidRequestError(
            f"google: Gemini fetches images only from gs:// and Gemini File API URIs, not "
            f"{shown}; send the bytes (Image.from_bytes / from_path) or let flyllm download it"
        )
    if media_type is None:
        media_type = mimetypes.guess_type(urlsplit(url).path)[0]
        if media_type is None:
            raise InvalidRequestError(
                f"google: Gemini needs the media type of {shown}: pass "
                "Image.from_url(url, media_type='image/png')"
            )
    return {"fileData": {"mimeType": _checked_type(media_type, shown), "fileUri": url}}


def _checked_type(media_type: str | None, what: str) -> str:
    kind = (media_type or "").lower()
    kind = "image/jpeg" if kind == "image/jpg" else kind  # a common misspelling
    if kind not in IMAGE_TYPES:
        raise InvalidRequestError(
            f"google: Gemini does not read {kind or 'images of unknown type'} ({what}); it takes "
            "PNG, JPEG, WEBP, HEIC and HEIF: convert the image first"
        )
    return kind


def check_inline_size(messages: Sequence[Message]) -> None:
    """InvalidRequestError when the conversation's inline images, base64-encoded, exceed
    MAX_INLINE_BYTES (measured before encoding anything)."""
    total = 0
    for m in messages:
        for image in m.images if m.parts else ():
            if image.data is not None:
                total += 4 * ((len(image.data) + 2) // 3)
    if total > MAX_INLINE_BYTES:
        raise InvalidRequestError(
            f"google: the images come to {total:,} bytes of inline data, over Gemini's "
            f"{MAX_INLINE_BYTES // 1_000_000} MB per request; upload large images with "
            "the Gemini File API and pass their URIs (Image.from_url)"
        )


def _shown(url: str) -> str:
    """The URL without its user-info, query and fragment (they may hold a credential or a
    signature), bounded."""
    return repr(mask_url(url).partition("?")[0][:200])
