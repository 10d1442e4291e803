"""The only I/O in flyllm: one pooled aiohttp session per manager.

The transport knows nothing of providers: it sends an HttpRequest and returns an HttpResponse,
turning aiohttp's failures into ProviderTimeoutError / ProviderConnectionError once, here.
aiohttp was chosen for its cost: about 0.5 ms of client CPU per request on our machines, against
2-4 ms for httpx's async client. Proxies from the standard environment variables (HTTP_PROXY,
HTTPS_PROXY, ALL_PROXY, NO_PROXY) are honoured, as the official SDKs do; they are read once per
session and looked up per host, not per request (aiohttp's ``trust_env`` costs two thread-pool
round trips per request, which tripled our client CPU).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from flyllm.errors import (
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)
from flyllm.providers.base import HttpRequest, HttpResponse

__all__ = ["Timeouts", "Transport"]

_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass(slots=True, frozen=True)
class Timeouts:
    """One attempt's limits in seconds: ``connect`` to open a connection, ``read`` between two
    reads (for a non-streamed answer: until it arrives; for a stream: per chunk), ``total`` for
    the whole attempt (None: no limit; the manager sets it from the request's deadline)."""

    connect: float = 10.0
    read: float = 120.0
    total: float | None = None


DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class Transport:
    """A pooled HTTP client. Create it anywhere; the session opens on first use in the running
    event loop and closes with ``aclose()``. Answers larger than ``max_response_bytes`` (a
    streamed one in total) are cut off with a MalformedResponseError."""

    def __init__(
        self,
        *,
        connection_limit: int = 0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str] = {}
        self._proxy_by_origin: dict[str, str | None] = {}
        self._timeouts: dict[tuple[Timeouts, bool], aiohttp.ClientTimeout] = {}

    def _client_timeout(self, timeouts: Timeouts, stream: bool) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for an attempt. A stream gets a timer per read (the read timeout
        is per chunk); a non-streamed answer one timer for the whole wait, which costs less
        than re-arming a read timer on every packet (about 6 us of CPU per request here)."""
        found = self._timeouts.get((timeouts, stream))
        if found is None:
            if stream:
                found = aiohttp.ClientTimeout(
                    total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.read
                )
            else:
                total = (
                    timeouts.read if timeouts.total is None else min(timeouts.read, timeouts.total)
                )
                found = aiohttp.ClientTimeout(total=total, sock_connect=timeouts.connect)
            if timeouts.total is None and len(self._timeouts) < 64:  # deadlines vary: no cache
                self._timeouts[(timeouts, stream)] = found
        return found

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._proxies = _env_proxies()
            self._proxy_by_origin.clear()
            session = aiohttp.ClientSession(
                connector=connector,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "flyllm/0.1.0"},
            )
            self._session = session
        return session

    def _proxy(self, url: str) -> str | None:
        """The proxy for ``url`` from the environment (None: connect directly)."""
        if not self._proxies:
            return None
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxy_by_origin:
            host = parts.hostname or ""
            bypass = _bypassed(host) if host else True
            proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
            self._proxy_by_origin[origin] = None if bypass else proxy
        return self._proxy_by_origin[origin]

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        """Send ``request`` and read the whole answer. Any status comes back as a response;
        only transport failures (and oversized answers) raise."""
        session = self._get_session()
        client_timeout = self._client_timeout(timeouts, stream=False)
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=client_timeout,
                proxy=self._proxy(request.url),
            ) as resp:
                body = await _read_limited(resp, self.max_response_bytes)
                return HttpResponse(resp.status, resp.headers, body)
        except _TRANSPORT_ERRORS as exc:
            raise _classify(exc, timeouts) from exc

    @asynccontextmanager
    async def open_stream(
        self, request: HttpRequest, timeouts: Timeouts
    ) -> AsyncIterator[tuple[HttpResponse, AsyncIterator[bytes]]]:
        """Open a streamed request. Yields the response head (with the whole body when the status
        is not 2xx, since errors are plain JSON) and an iterator of raw body chunks. Leaving the
        block closes the connection at once."""
        session = self._get_session()
        try:
            resp = await session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._client_timeout(timeouts, stream=True),
                proxy=self._proxy(request.url),
            )
        except _TRANSPORT_ERRORS as exc:
            raise _classify(exc, timeouts) from exc
        try:
            if resp.status >= 300:
                try:
                    body = await _read_limited(resp, self.max_response_bytes)
                except _TRANSPORT_ERRORS as exc:
                    raise _classify(exc, timeouts) from exc
                yield HttpResponse(resp.status, resp.headers, body), _empty()
            else:
                chunks = _chunks(resp, timeouts, self.max_response_bytes)
                yield HttpResponse(resp.status, resp.headers, b""), chunks
        finally:
            # close() drops the connection instead of draining it: an abandoned stream must
            # not keep the provider generating (and billing) tokens.
            resp.close()

    async def aclose(self) -> None:
        """Close the pooled session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _env_proxies() -> dict[str, str]:
    """Proxies from the environment, by scheme (urllib imported only here: it is slow to load)."""
    import urllib.request

    return {k: v for k, v in urllib.request.getproxies().items() if k != "no"}


def _bypassed(host: str) -> bool:
    """Whether NO_PROXY exempts ``host``."""
    import urllib.request

    return bool(urllib.request.proxy_bypass(host))


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or MalformedResponseError past ``limit`` bytes."""
    length = resp.content_length
    if length is not None and length <= limit:
        return await resp.read()
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise MalformedResponseError(
                f"answer larger than {limit} bytes: cut off", status=resp.status
            )
    return bytes(body)


async def _chunks(
    resp: aiohttp.ClientResponse, timeouts: Timeouts, limit: int
) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for chunk in resp.content.iter_any():
            received += len(chunk)
            if received > limit:
                raise MalformedResponseError(
                    f"stream longer than {limit} bytes: cut off", status=resp.status
                )
            yield chunk
    except _TRANSPORT_ERRORS as exc:
        raise _classify(exc, timeouts) from exc


def _classify(exc: BaseException, timeouts: Timeouts) -> ProviderError:
    """aiohttp's and asyncio's failures as flyllm's two transport errors."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ProviderTimeoutError(f"could not connect within {timeouts.connect:g} s")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        limits = f"read timeout {timeouts.read:g} s"
        if timeouts.total is not None:
            limits += f", deadline {timeouts.total:.3g} s"
        return ProviderTimeoutError(f"no answer in time ({limits})")
    if isinstance(exc, aiohttp.ClientError | OSError):
        detail = str(exc) or type(exc).__name__
        return ProviderConnectionError(f"{type(exc).__name__}: {detail}")
    return ProviderConnectionError(f"{type(exc).__name__}: {exc}")
