"""Image URLs made bytes for the providers that take images only as bytes.

Before an attempt's request is built, each Image with a ``url`` whose scheme the instance's
provider does not fetch itself (``Provider.image_url_schemes``) is downloaded here, through the
manager's transport and so under its rules (no redirects followed, the attempt's connect and
read timeouts and deadline, bounded decoding), up to ``max_image_bytes`` per image; its media
type comes from the bytes. The provider then gets a copy of the conversation with
``Image(data=...)`` in its place. One ``ImageFetcher`` serves one request: each URL is
downloaded once, whatever the attempts and failovers, and never for a provider that takes it.

A download that fails is the request's own error, an InvalidRequestError naming the URL
(without its query, which may hold a token): the URL is the caller's, no instance is to blame
(no breaker effect, no failover: another instance would fetch the same URL from the same host),
and the caller knows best whether to try again, fix the URL or pass the bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import cast

from flyllm._display import mask_url
from flyllm._transport import Transport
from flyllm._wire import HttpRequest, Timeouts, url_scheme
from flyllm.errors import (
    FlyLLMError,
    InvalidRequestError,
    ProviderError,
    RedirectError,
    UnsupportedFeatureError,
)
from flyllm.types import ErrorKind, Image, Message

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "ImageFetcher", "needs_fetcher", "shown_url"]

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The largest image flyllm downloads (20 MiB, above every provider's own limit)."""

_DOWNLOADABLE = frozenset({"http", "https"})
# RFC 3986's, bounded, and of two letters or more: "C:\\photos" is a Windows path
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{1,31}")
_HEADERS = {"Accept": "image/*"}


def shown_url(url: str) -> str:
    """``url`` as an error message names it: no user-info, query or fragment."""
    return mask_url(url).partition("?")[0]


class ImageFetcher:
    """One request's image downloads: ``conversation`` gives the messages a provider taking
    images by URL only with ``schemes`` should get; downloads are cached for the request."""

    __slots__ = ("_by_provider", "_images", "_limit", "_transport")

    def __init__(self, transport: Transport, limit: int) -> None:
        self._transport = transport
        self._limit = limit
        self._images: dict[str, Image] = {}  # URL -> the downloaded image
        self._by_provider: dict[object, tuple[Message, ...]] = {}

    async def conversation(
        self,
        messages: tuple[Message, ...],
        accepts: Callable[[str], bool],
        timeouts: Timeouts,
        provider: str,
    ) -> tuple[Message, ...]:
        """``messages`` with every image URL the provider does not take (``accepts``, its
        ``accepts_image_url``) replaced by its bytes (the same tuple when there is none).
        Raises InvalidRequestError for a download that fails, UnsupportedFeatureError for a
        URL flyllm cannot download (a ``gs://`` URI for a provider that does not take it:
        another instance may). Cached per provider for the request."""
        key = getattr(accepts, "__self__", accepts)  # the provider object
        found = self._by_provider.get(key)
        if found is None:
            out = [await self._turn(m, accepts, timeouts, provider) for m in messages]
            changed = any(a is not b for a, b in zip(out, messages, strict=True))
            found = self._by_provider[key] = tuple(out) if changed else messages
        return found

    async def _turn(
        self, message: Message, accepts: Callable[[str], bool], timeouts: Timeouts, provider: str
    ) -> Message:
        if not message.parts:
            return message
        parts: list[str | Image] = []
        for part in message.parts:
            url = part.url if isinstance(part, Image) else None
            if url is not None and not accepts(url):
                part = await self._image(cast(Image, part), url, timeouts, provider)
            parts.append(part)
        if all(a is b for a, b in zip(parts, message.parts, strict=True)):
            return message
        return dataclasses.replace(message, parts=tuple(parts))

    async def _image(self, image: Image, url: str, timeouts: Timeouts, provider: str) -> Image:
        found = self._images.get(url)
        if found is None:
            scheme = url_scheme(url)
            if scheme == "data":  # bytes already, spelt as a URI: decoded, not fetched
                found = _from_bytes(url, lambda: Image.from_url(url))
            elif not _SCHEME.fullmatch(scheme):
                raise InvalidRequestError(
                    f"the image URL {shown_url(url)[:100]!r} has no scheme (http, https...): "
                    "for a file use Image.from_path"
                )
            elif scheme not in _DOWNLOADABLE:
                raise UnsupportedFeatureError(
                    f"{provider} does not take images at {scheme}: URLs and flyllm downloads "
                    f"only http(s) ones ({shown_url(url)}): send it to an instance that takes "
                    "it, or pass the image's bytes (Image.from_bytes)",
                    provider=provider,
                    feature=f"{scheme}_image_urls",
                )
            else:
                data = await self._download(url, timeouts)
                found = _from_bytes(url, lambda: Image.from_bytes(data, image.media_type))
            self._images[url] = found
        return dataclasses.replace(found, detail=image.detail)

    async def _download(self, url: str, timeouts: Timeouts) -> bytes:
        """The body of a 200 answer to a GET of ``url``; InvalidRequestError otherwise."""
        request = HttpRequest("GET", url, _HEADERS, b"")
        try:
            response = await self._transport.send_within(request, timeouts, self._limit)
        except RedirectError as exc:
            to = f" to {exc.location}" if exc.location else ""
            raise _failed(
                url,
                f"it answered a redirect{to} (HTTP {exc.status}), which flyllm does not follow: "
                "give the image's final URL",
            ) from None
        except ProviderError as exc:
            raise _failed(url, _why(exc, self._limit)) from None
        except FlyLLMError as exc:  # a URL the HTTP client refuses
            raise _failed(url, str(exc)) from None
        if response.status != 200:
            raise _failed(url, f"it answered HTTP {response.status}: check the URL")
        return response.body


def _why(exc: ProviderError, limit: int) -> str:
    """Why a download failed, in words for the caller."""
    if "larger than" in exc.message:  # the transport's size limit
        return f"it is larger than {limit} bytes (max_image_bytes)"
    if exc.kind is ErrorKind.NOT_FOUND:  # the transport's word for a URL it cannot parse
        return "it is not a valid http(s) URL"
    if exc.kind in (ErrorKind.TIMEOUT, ErrorKind.CONNECTION):
        return f"{exc.message}; try again later, or pass the image's bytes (Image.from_bytes)"
    return exc.message


def _failed(url: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"could not download the image at {shown_url(url)}: {why}")


def _from_bytes(url: str, make: Callable[[], Image]) -> Image:
    """The Image ``make`` builds; its ValueError (not an image, a contradicting media type)
    as an InvalidRequestError naming the URL."""
    try:
        return make()
    except ValueError as exc:
        raise InvalidRequestError(f"the image at {shown_url(url)} is unusable: {exc}") from None


def needs_fetcher(messages: Sequence[Message]) -> bool:
    """Whether any turn holds an image by URL (only such requests make an ImageFetcher)."""
    return any(p.url is not None for m in messages if m.parts for p in m.images)
