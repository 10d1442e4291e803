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
import math
import re
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import aiohttp

from flyllm._display import mask_url, mask_urls
from flyllm._wire import HttpRequest, HttpResponse, Timeouts
from flyllm.errors import (
    FlyLLMError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RedirectError,
)

__all__ = ["StreamBody", "Transport"]

_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
# what aiohttp raises for a request it refuses to send (a header with CR/LF or not a string)
_UNSENDABLE = (ValueError, TypeError, UnicodeError, OverflowError)
# causes chained to flyllm's errors (a cause shows in tracebacks and logs): their text names
# at most a host and port, never a URL's userinfo or query
_SAFE_CAUSES = (asyncio.TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

# flyllm inflates answers itself (aiohttp's auto_decompress is off): only these encodings, in
# steps of at most _PIECE bytes, so a bomb is stopped at max_response_bytes of decoded bytes.
_ACCEPT_ENCODING = "gzip, deflate"
_PIECE = 256 * 1024
_MAX_MEMBERS = 1024  # gzip members in one body (each costs a fresh decompressor)


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
        """aiohttp's timeouts for an attempt. A non-streamed answer gets one timer for the whole
        wait, which costs less than re-arming a read timer on every packet (about 6 us of CPU
        per request here). A stream gets none for reads: aiohttp's restarts on every byte, so a
        server dripping bytes would never time out; open_stream and StreamBody keep the read
        timeout instead."""
        found = self._timeouts.get((timeouts, stream))
        if found is None:
            _check_timeouts(timeouts)
            if stream:
                found = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
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
                headers={"User-Agent": "flyllm/0.1.0", "Accept-Encoding": _ACCEPT_ENCODING},
                auto_decompress=False,  # _Inflater decodes, within the size limit
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
        only transport failures (and answers over ``max_response_bytes``) raise."""
        return await self.send_within(request, timeouts, self.max_response_bytes)

    async def send_within(
        self, request: HttpRequest, timeouts: Timeouts, limit: int
    ) -> HttpResponse:
        """``send`` with answers cut off past ``limit`` bytes (an image download's own)."""
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
                allow_redirects=False,
            ) as resp:
                if 300 <= resp.status < 400:
                    raise _redirect(resp, request.url)
                body = await _read_limited(resp, limit)
                return HttpResponse(resp.status, resp.headers, body)
        except (*_TRANSPORT_ERRORS, *_UNSENDABLE) as exc:
            raise _failure(exc, request, timeouts) from _cause(exc)

    @asynccontextmanager
    async def open_stream(
        self, request: HttpRequest, timeouts: Timeouts
    ) -> AsyncIterator[tuple[HttpResponse, StreamBody]]:
        """Open a streamed request. Yields the response head (with the whole body when the status
        is not 2xx, since errors are plain JSON) and the body, an iterator of decoded chunks
        whose reader calls ``progress()`` on each complete event. The head, an error body and
        each event must arrive within ``timeouts.read``. Leaving the block closes the
        connection at once."""
        session = self._get_session()
        try:
            resp = await _within(  # the whole head, however slowly it drips
                session.request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers=request.headers,
                    timeout=self._client_timeout(timeouts, stream=True),
                    proxy=self._proxy(request.url),
                    allow_redirects=False,
                ),
                timeouts.read,
            )
        except (*_TRANSPORT_ERRORS, *_UNSENDABLE) as exc:
            raise _failure(exc, request, timeouts) from _cause(exc)
        body = StreamBody(resp, timeouts, self.max_response_bytes, request.url)
        try:
            if 300 <= resp.status < 400:
                raise _redirect(resp, request.url)
            if resp.status >= 300:
                try:
                    data = await _read_limited(resp, self.max_response_bytes)
                except ProviderTimeoutError:  # StreamBody's timer: not an event but a body
                    raise ProviderTimeoutError(
                        f"the error answer's body did not arrive within the read timeout "
                        f"({timeouts.read:g} s)",
                        status=resp.status,
                    ) from None
                except _TRANSPORT_ERRORS as exc:
                    raise _failure(exc, request, timeouts) from _cause(exc)
                yield HttpResponse(resp.status, resp.headers, data), body
            else:
                yield HttpResponse(resp.status, resp.headers, b""), body
        finally:
            body.close()
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


async def _within(
    answer: Awaitable[aiohttp.ClientResponse], seconds: float
) -> aiohttp.ClientResponse:
    """``answer`` awaited in this task, cut off after ``seconds`` (asyncio.TimeoutError).
    wait_for before 3.12 runs it in a task of its own, one loop turn later: data and a cut
    that followed the head would then be buffered together, and aiohttp reports the cut
    before the data, losing chunks the server did send."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await answer
    return await asyncio.wait_for(answer, seconds)  # pragma: no cover - Python 3.10


class StreamBody:
    """A streamed answer's body: iterate it for decoded chunks. The read timeout runs from the
    response head to the first complete event and then between complete events: the reader,
    which knows the framing, calls ``progress()`` whenever a chunk completed one. A stream that
    stalls or drips bytes completing nothing fails with ProviderTimeoutError. The time the
    reader spends on a chunk (the caller's own work) does not count: the timeout measures the
    server.

    One timer per stream: ``progress()`` only moves the deadline, and the timer, when it
    fires early, sleeps again until the deadline (no re-arming per chunk)."""

    __slots__ = ("_chunks", "_deadline", "_handle", "_loop", "_paused_at", "_read", "_resp")

    def __init__(
        self, resp: aiohttp.ClientResponse, timeouts: Timeouts, limit: int, url: str
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._resp = resp
        self._read = timeouts.read
        self._deadline = self._loop.time() + timeouts.read
        self._paused_at: float | None = None  # when the reader took the chunk it is busy with
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._deadline, self._expire)
        self._chunks = _chunks(resp, timeouts, limit, url)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = self._loop
        async for chunk in self._chunks:
            self._paused_at = paused_at = loop.time()
            yield chunk
            self._deadline += loop.time() - paused_at
            self._paused_at = None
            if self._handle is None:  # the timer came due while the reader was busy
                self._handle = loop.call_at(self._deadline, self._expire)

    def progress(self) -> None:
        """A complete event arrived: the read timeout starts again."""
        at = self._paused_at
        self._deadline = (self._loop.time() if at is None else at) + self._read

    def close(self) -> None:
        """Stop the timer (the transport closes the connection)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._handle = None
        if self._paused_at is not None:
            return  # the reader is busy: __aiter__ re-arms when it asks for more
        if self._loop.time() < self._deadline:
            self._handle = self._loop.call_at(self._deadline, self._expire)
            return
        # wakes the pending read (or fails the next one) with the error, as aiohttp's own
        # read timeout does
        self._resp.content.set_exception(
            ProviderTimeoutError(
                f"the stream sent no complete event within the read timeout ({self._read:g} s)"
            )
        )


class _Inflater:
    """Decodes a gzip or deflate body in steps of at most _PIECE bytes. aiohttp (before 3.13)
    inflates each socket read whole, so one 64 KiB read of a bomb could become 64 MiB before
    any limit could look at it; here the caller counts every step."""

    __slots__ = ("_decoder", "_encoding", "_members", "_status")

    def __init__(self, encoding: str, status: int) -> None:
        self._encoding = encoding
        self._status = status
        self._decoder: zlib._Decompress | None = None
        self._members = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of these compressed bytes."""
        try:
            while data:
                decoder = self._decoder
                if decoder is None:
                    decoder = self._decoder = zlib.decompressobj(self._wbits(data))
                    self._members += 1
                    if self._members > _MAX_MEMBERS:
                        raise zlib.error(f"more than {_MAX_MEMBERS} members")
                piece = decoder.decompress(data, _PIECE)
                data = decoder.unconsumed_tail
                if decoder.eof:  # another gzip member may follow
                    data, self._decoder = decoder.unused_data, None
                if piece:
                    yield piece
        except zlib.error as exc:
            raise self._error(f"could not decode the {self._encoding} answer ({exc})") from None

    def finish(self) -> None:
        """Check that the body did not end inside a compressed member."""
        if self._decoder is not None:
            raise self._error(f"the {self._encoding} answer ended before its end")

    def _wbits(self, data: bytes) -> int:
        if self._encoding != "deflate":
            return 16 + zlib.MAX_WBITS
        # HTTP's deflate is zlib-wrapped, but some servers send it raw (as aiohttp allows)
        return zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS

    def _error(self, message: str) -> MalformedResponseError:
        return MalformedResponseError(message, status=self._status)


def _inflater(resp: aiohttp.ClientResponse) -> _Inflater | None:
    """The decoder for the answer's Content-Encoding (None: not encoded)."""
    encoding = resp.headers.get("Content-Encoding")
    if encoding is None:
        return None
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflater(encoding, resp.status)
    raise MalformedResponseError(
        f"the answer's Content-Encoding {encoding[:40]!r} is not supported (flyllm asks for "
        f"{_ACCEPT_ENCODING}; check headers= for an Accept-Encoding)",
        status=resp.status,
    )


def _too_large(resp: aiohttp.ClientResponse, limit: int, what: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"{what} than {limit} bytes: cut off (max_response_bytes)", status=resp.status
    )


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole (decoded) body, or MalformedResponseError past ``limit`` bytes, raw or
    decoded."""
    inflater = _inflater(resp)
    length = resp.content_length
    if inflater is None and length is not None and length <= limit:
        return await resp.read()
    body = bytearray()
    raw = 0
    async for chunk in resp.content.iter_any():
        raw += len(chunk)
        if inflater is None:
            body += chunk
        else:
            for piece in inflater.feed(chunk):
                body += piece
                if len(body) > limit:
                    raise _too_large(resp, limit, "answer larger")
        if len(body) > limit or raw > limit:
            raise _too_large(resp, limit, "answer larger")
    if inflater is not None:
        inflater.finish()
    return bytes(body)


async def _chunks(
    resp: aiohttp.ClientResponse, timeouts: Timeouts, limit: int, url: str
) -> AsyncIterator[bytes]:
    received = decoded = 0
    try:
        inflater = _inflater(resp)
        async for chunk in resp.content.iter_any():
            received += len(chunk)
            if received > limit:
                raise _too_large(resp, limit, "stream longer")
            if inflater is None:
                yield chunk
                continue
            for piece in inflater.feed(chunk):
                decoded += len(piece)
                if decoded > limit:
                    raise _too_large(resp, limit, "stream longer")
                yield piece
        if inflater is not None:
            inflater.finish()
    except _TRANSPORT_ERRORS as exc:
        raise _classify(exc, timeouts, url) from _cause(exc)


_HOST = re.compile(r"[A-Za-z0-9._~%:-]+")  # what a host may hold (an IPv6 one without brackets)


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``: never its userinfo, path or query (None when it
    has no readable host)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host or not _HOST.fullmatch(host):
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" if port is None else f"{parts.scheme}://{host}:{port}"


def _redirect(resp: aiohttp.ClientResponse, url: str) -> RedirectError:
    """The error for a 3xx answer, naming where it pointed (its origin only)."""
    location = resp.headers.get("Location", "")
    try:
        origin = _origin(urljoin(url, location)) if location else None
    except ValueError:
        origin = None
    if origin:
        where = f"to {origin}"
    else:
        where = "with an unreadable Location" if location else "without a Location"
    return RedirectError(
        f"the server answered a redirect {where}; flyllm never follows redirects (they would "
        "carry the API key and the prompt to another host): set base_url to the API's own "
        "address",
        status=resp.status,
        location=origin,
    )


def _check_timeouts(timeouts: Timeouts) -> None:
    """InvalidRequestError unless every limit is a positive finite number of seconds (aiohttp
    would raise OverflowError for an infinite one, or never time out for a NaN)."""
    for name, value in (("connect", timeouts.connect), ("read", timeouts.read),
                        ("total", timeouts.total)):  # fmt: skip
        if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
            raise InvalidRequestError(
                f"{name} timeout {value!r} is not a positive finite number of seconds"
            )


def _cause(exc: BaseException) -> BaseException | None:
    """The cause to chain: ``exc`` unless its text may hold a URL or a header value."""
    return exc if isinstance(exc, _SAFE_CAUSES) else None


def _failure(exc: BaseException, request: HttpRequest, timeouts: Timeouts) -> FlyLLMError:
    """The typed error for anything sending ``request`` raised."""
    if isinstance(exc, aiohttp.InvalidURL):  # built from the instance's base URL and model:
        return NotFoundError(  # its failing says nothing of the request, so fail over, bench it
            f"{mask_url(request.url)} is not a valid http(s) URL: check the instance's base_url"
        )
    if isinstance(exc, _UNSENDABLE) and not isinstance(exc, _TRANSPORT_ERRORS):
        where = _origin(request.url) or mask_url(request.url)
        problem = _header_problem(request.headers) or f"the HTTP client raised {type(exc).__name__}"
        return InvalidRequestError(f"could not send the request to {where}: {problem}")
    return _classify(exc, timeouts, request.url)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _header_problem(headers: Mapping[str, str]) -> str | None:
    """Which header aiohttp refused, named without its value (it may be a key)."""
    for name, value in headers.items():
        label = repr(name)[:60]
        if not isinstance(name, str) or not isinstance(value, str):
            return (
                f"header {label} is not a string ({type(value).__name__}): check the instance's "
                "headers="
            )
        if _CONTROL.search(name) or _CONTROL.search(value):
            return (
                f"header {label} holds a line break or another control character: check the "
                "instance's headers= and API key (a key read from a file often ends in a newline)"
            )
    return None


def _scrub(text: str, url: str) -> str:
    """``text`` with ``url`` (which may not even parse as one) and any other URL in it masked."""
    return mask_urls(text.replace(url, mask_url(url)))


def _classify(exc: BaseException, timeouts: Timeouts, url: str) -> ProviderError:
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
    detail = _scrub(str(exc), url) or type(exc).__name__
    return ProviderConnectionError(f"{type(exc).__name__}: {detail}")
