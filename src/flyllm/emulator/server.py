"""The emulated provider instance: a loopback aiohttp server speaking one dialect.

Request flow: route -> count and record -> auth -> required headers -> JSON -> provider
validation -> known model -> fault draw -> added latency -> answer (error, fault, trigger,
or the deterministic reply). A models-endpoint GET goes route -> auth -> headers -> the page
of models -> fault draw -> latency -> answer. The low-level ``aiohttp.web.Server`` is used on
purpose (no router, no middlewares): the emulator must never be what limits a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Collection, Iterable
from types import TracebackType
from typing import Any

from aiohttp import web

from flyllm.emulator.control import CONTROL_PREFIX, handle_control
from flyllm.emulator.dialects import canonical_provider, make_dialect
from flyllm.emulator.faults import ERROR_KINDS, Fault, FaultPlan
from flyllm.emulator.stats import RecordedRequest, Stats
from flyllm.emulator.structured import image_note, output_reply
from flyllm.emulator.text import Reply, compose_reply
from flyllm.emulator.tools import supports_tools, tool_reply
from flyllm.emulator.wire import Answer, Conversation, Route

__all__ = ["Emulator"]

_log = logging.getLogger("flyllm.emulator")

REQUEST_LOG_SIZE = 1000
SHUTDOWN_GRACE_S = 0.5
_LISTING = Conversation(model="models", prompt="", prompt_tokens=0)
"""What a fault answer on the models endpoint is about (rate-limit wording names a model)."""


def _load_json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _reset_connection(transport: asyncio.Transport | None) -> None:
    """Drop the connection with a TCP RST, discarding anything not yet sent."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _warn_unless_loopback(host: str, addresses: list[Any]) -> None:
    """Say loudly when the emulator listens beyond this machine: it accepts any key, and its
    control API (faults, counters) is then open to every host that can reach it."""
    outside = []
    for address in addresses:
        try:
            loopback = ipaddress.ip_address(str(address[0])).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            outside.append(str(address[0]))
    if outside:
        _log.warning(
            "flyllm emulator bound to %s (%s): not loopback, so other machines can reach it "
            "and its control API; bind 127.0.0.1 unless that is what you want",
            host,
            ", ".join(outside),
        )


def _acknowledged(reply: Reply, images: tuple[str, ...]) -> Reply:
    """``reply`` with the images' acknowledgement in front (its first chunk)."""
    note = image_note(images) + " "
    return dataclasses.replace(
        reply, text=note + reply.text, chunks=(note, *reply.chunks), tokens=reply.tokens + 2
    )


def _truncate_event(event: bytes) -> bytes:
    """The event with its JSON payload cut in half but its framing kept (an SSE event's blank
    line, or an NDJSON line's newline)."""
    sep = b""
    for ending in (b"\r\n\r\n", b"\n\n", b"\n"):
        if event.endswith(ending):
            sep = ending
            break
    body = event[: len(event) - len(sep)]
    start = body.find(b"data: ")
    start = 0 if start < 0 else start + 6
    payload = body[start:]
    return body[:start] + payload[: max(len(payload) // 2, 1)] + sep


class Emulator:
    """One emulated provider instance on its own loopback port.

    Use ``async with Emulator(provider="openai") as emu:`` in tests (ephemeral port), or run
    many via ``flyllm emulate``. ``api_keys=None`` accepts any non-empty key; ``models=None``
    accepts any model name. Latencies are in milliseconds; ``reply_tokens`` fixes the reply
    length (default: 12..40 words derived from the prompt); ``context_window`` answers prompts
    of more tokens with the provider's context-length error. ``seed`` drives the reply text,
    the probabilistic faults and the jitter: give instances different seeds so that their
    faults are not correlated. See the package docstring for the text, token and trigger
    conventions.
    """

    def __init__(
        self,
        provider: str = "openai",
        *,
        api_keys: Collection[str] | None = None,
        models: Collection[str] | None = None,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        reply_tokens: int | None = None,
        context_window: int | None = None,
        seed: int = 0,
        faults: Iterable[Fault] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.provider = canonical_provider(provider)
        self._dialect = make_dialect(self.provider, None if models is None else frozenset(models))
        self._keys = None if api_keys is None else frozenset(api_keys)
        self._seed = seed
        self._reply_tokens = reply_tokens
        self._context_window = context_window
        self._plan = FaultPlan(faults, seed)
        self._jitter_rng = random.Random(seed + 1)
        self._latency_s = self._jitter_s = self._chunk_delay_s = 0.0
        self.set_latency(latency_ms=latency_ms, jitter_ms=jitter_ms, chunk_delay_ms=chunk_delay_ms)
        self._stats = Stats()
        self._log: deque[RecordedRequest] = deque(maxlen=REQUEST_LOG_SIZE)
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.ServerRunner | None = None
        self._server: web.Server | None = None
        self._closing = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving (idempotent)."""
        if self._runner is not None:
            return
        self._closing = asyncio.Event()
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._server, self._runner = server, runner
        self._port = int(runner.addresses[0][1])
        _warn_unless_loopback(self._host, runner.addresses)

    async def stop(self) -> None:
        """Stop serving: hanging requests are dropped, open connections closed."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        await runner.cleanup()
        self._server = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``, the root where the control API lives."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The base URL to give the provider's official SDK (``/v1`` appended for OpenAI)."""
        return self._dialect.base_url(self.url)

    # -- controls --------------------------------------------------------------------------

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace the probabilistic faults."""
        self._plan.set_faults(list(faults))

    def schedule(
        self,
        kind: str | Fault,
        count: int = 1,
        *,
        retry_after: float | None = 1.0,
        status: int | None = None,
    ) -> None:
        """Give the next ``count`` requests this fault (FIFO, before probabilistic faults)."""
        fault = kind if isinstance(kind, Fault) else Fault(kind, 1.0, retry_after, status)
        self._plan.schedule(fault, count)

    def set_latency(
        self,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
        chunk_delay_ms: float | None = None,
    ) -> None:
        """Change the added latency; arguments left ``None`` keep their value."""
        for name, value in (
            ("latency_ms", latency_ms),
            ("jitter_ms", jitter_ms),
            ("chunk_delay_ms", chunk_delay_ms),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if latency_ms is not None:
            self._latency_s = latency_ms / 1000
        if jitter_ms is not None:
            self._jitter_s = jitter_ms / 1000
        if chunk_delay_ms is not None:
            self._chunk_delay_s = chunk_delay_ms / 1000

    def settings(self) -> dict[str, Any]:
        """The current fault and latency settings (JSON-able)."""
        return {
            "provider": self.provider,
            "faults": [f.to_dict() for f in self._plan.faults],
            "scheduled": [f.to_dict() for f in self._plan.scheduled],
            "latency_ms": self._latency_s * 1000,
            "jitter_ms": self._jitter_s * 1000,
            "chunk_delay_ms": self._chunk_delay_s * 1000,
        }

    def stats(self) -> dict[str, Any]:
        """A JSON-able snapshot of the counters.

        Control-API requests are not counted, but their connections are part of
        ``open_connections`` while they are open.
        """
        server = self._server
        return self._stats.snapshot(len(server.connections) if server is not None else 0)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last 1000 provider requests received, oldest first."""
        return list(self._log)

    def reset(self) -> None:
        """Zero the counters, clear the request log and the fault schedule."""
        self._stats.reset()
        self._log.clear()
        self._plan.clear_schedule()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"Emulator(provider={self.provider!r}, {where})"

    # -- request handling ------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handle_control(self, request)
        self._stats.begin()
        try:
            return await self._serve(request)
        finally:
            self._stats.end()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        dialect, stats = self._dialect, self._stats
        headers, query = request.headers, request.query
        route = dialect.match(request.method, request.path, query)
        raw = await request.content.read()  # no 1 MiB cap: real APIs take much larger bodies
        body = _load_json(raw)
        key = dialect.credentials(headers, query)
        label = route.label if route is not None else "unknown"
        stats.received(label, key)
        self._log.append(
            RecordedRequest(request.method, request.path, label, headers, query, body, key)
        )
        rid = dialect.request_id()
        outcome = self._evaluate(request, route, key, body, rid)
        fault = None
        if isinstance(outcome, Conversation):
            stats.model(outcome.model)
        listed = (
            isinstance(outcome, Answer)
            and outcome.status == 200
            and route is not None
            and (route.listing or route.embed)  # a whole answer faults may spoil
        )
        if isinstance(outcome, Conversation) or listed:
            fault = self._plan.draw()
            if fault is not None:
                stats.fault(fault.kind)
        await self._pause()
        if isinstance(outcome, Answer):
            if fault is not None:
                return await self._inject_listing(request, fault, outcome, rid, started)
            return self._respond(outcome, rid, started)
        if fault is None:
            return await self._succeed(request, outcome, rid, started, None)
        return await self._inject(request, fault, outcome, rid, started)

    def _evaluate(
        self,
        request: web.BaseRequest,
        route: Route | None,
        key: str | None,
        body: dict[str, Any] | None,
        rid: str,
    ) -> Conversation | Answer:
        dialect = self._dialect
        if route is None:
            return dialect.not_found(request.method, request.path, rid)
        if key is None or (self._keys is not None and key not in self._keys):
            return dialect.auth_error(key, rid)
        problem = dialect.check_headers(request.headers, rid)
        if problem is not None:
            return problem
        if route.listing:
            return dialect.list_models(route, request.query, rid)
        if body is None:
            return dialect.malformed_json(rid)
        if route.embed:
            return dialect.embed(route, body, self._context_window, rid)
        conv = dialect.parse(route, body, request.headers, rid)
        if isinstance(conv, Conversation) and not dialect.known_model(conv.model):
            return dialect.unknown_model(conv.model, route, rid)
        return conv

    async def _pause(self) -> None:
        delay = self._latency_s
        if self._jitter_s:
            delay += self._jitter_rng.uniform(0.0, self._jitter_s)
        if delay > 0:
            await asyncio.sleep(delay)

    def _respond(
        self, answer: Answer, rid: str, started: float, tokens: tuple[int, int] = (0, 0)
    ) -> web.Response:
        headers = self._dialect.headers(
            rid, tokens, time.monotonic() - started, answer.throttled_for
        )
        headers.update(answer.headers)
        headers["Content-Type"] = answer.content_type
        self._stats.status(answer.status)
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    async def _inject(
        self, request: web.BaseRequest, fault: Fault, conv: Conversation, rid: str, started: float
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind in ERROR_KINDS or (kind == "stream_error" and not conv.stream):
            return self._respond(self._dialect.fault_answer(fault, conv, rid), rid, started)
        if kind == "hang":
            await self._closing.wait()
            kind = "reset"
        if kind == "reset":
            _reset_connection(request.transport)
            return web.Response()
        return await self._succeed(request, conv, rid, started, kind, fault.after_chunks)

    async def _inject_listing(
        self, request: web.BaseRequest, fault: Fault, answer: Answer, rid: str, started: float
    ) -> web.StreamResponse:
        """A fault on a models-endpoint answer: the error kinds (and ``stream_error``) as the
        provider's error answer, ``malformed`` as the first half of the body, ``stream_cut``
        as half the body and a closed connection, ``hang`` and ``reset`` as for chat."""
        kind = fault.kind
        if kind in ERROR_KINDS or kind == "stream_error":
            return self._respond(self._dialect.fault_answer(fault, _LISTING, rid), rid, started)
        if kind == "hang":
            await self._closing.wait()
            kind = "reset"
        if kind == "reset":
            _reset_connection(request.transport)
            return web.Response()
        if kind == "bad_output":  # a listing has no structured output to spoil
            return self._respond(answer, rid, started)
        if kind == "malformed":
            cut = Answer(200, answer.body[: len(answer.body) // 2], answer.content_type)
            return self._respond(cut, rid, started)
        return await self._cut_body(request, answer, rid, started)

    async def _succeed(
        self,
        request: web.BaseRequest,
        conv: Conversation,
        rid: str,
        started: float,
        fault: str | None,
        after_chunks: int | None = None,
    ) -> web.StreamResponse:
        dialect = self._dialect
        window = self._context_window
        if conv.trigger == "context_length" or (window is not None and conv.prompt_tokens > window):
            return self._respond(dialect.context_length(conv, rid), rid, started)
        refusal = conv.trigger == "refusal" and dialect.supports_refusal
        if conv.tools and not supports_tools(conv.model):
            return self._respond(dialect.tools_unsupported(conv, rid), rid, started)
        reply = self._tool_reply(conv) if conv.tools or conv.tool_results else None
        wants_json = conv.output_json or conv.output_schema is not None
        if wants_json and (reply is None or not reply.calls):  # the answer, not a tool step
            reply = output_reply(conv.output_schema, conv.prompt, fault == "bad_output")
        if reply is None:
            reply = compose_reply(
                conv.prompt, self._seed, self._reply_tokens, conv.max_tokens, conv.stop, refusal
            )
            if conv.images:
                reply = _acknowledged(reply, conv.images)
        if conv.stream:
            return await self._stream(request, conv, reply, rid, started, fault, after_chunks)
        body = dialect.body(conv, reply, rid)
        if fault == "malformed":
            body = body[: len(body) // 2]
        answer = Answer(200, body, dialect.json_type)
        if fault == "stream_cut":
            return await self._cut_body(request, answer, rid, started)
        return self._respond(answer, rid, started, (conv.prompt_tokens, reply.tokens))

    @staticmethod
    def _tool_reply(conv: Conversation) -> Reply | None:
        return tool_reply(
            conv.tools, conv.tool_choice, conv.parallel_tools, conv.prompt, conv.last_role,
            conv.tool_results, conv.max_tokens, conv.stop,
        )  # fmt: skip

    async def _cut_body(
        self, request: web.BaseRequest, answer: Answer, rid: str, started: float
    ) -> web.StreamResponse:
        """Announce the whole body, send half of it, then close the connection."""
        headers = self._dialect.headers(rid, (0, 0), time.monotonic() - started, None)
        headers["Content-Type"] = answer.content_type
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = len(answer.body)
        self._stats.status(200)
        with contextlib.suppress(ConnectionResetError):
            await response.prepare(request)
            await response.write(answer.body[: len(answer.body) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    async def _stream(
        self,
        request: web.BaseRequest,
        conv: Conversation,
        reply: Reply,
        rid: str,
        started: float,
        fault: str | None,
        after_chunks: int | None = None,
    ) -> web.StreamResponse:
        dialect, stats = self._dialect, self._stats
        plan = dialect.stream(conv, reply, rid)
        events = [*plan.head, *plan.content, *plan.tail]
        if after_chunks is None:  # by default the fault strikes half-way through the content
            after_chunks = max(1, len(plan.content) // 2) if plan.content else 0
        cut = len(plan.head) + min(after_chunks, len(plan.content))
        if fault == "stream_cut":
            events = events[:cut]
        elif fault == "stream_error":
            events = [*events[:cut], dialect.stream_error(rid)]
        elif fault == "malformed" and len(events) > len(plan.head):
            events[len(plan.head)] = _truncate_event(events[len(plan.head)])
        headers = dialect.headers(
            rid, (conv.prompt_tokens, reply.tokens), time.monotonic() - started, None
        )
        headers["Content-Type"] = plan.content_type
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        try:
            await response.prepare(request)
        except ConnectionResetError:  # the client left during the time to first chunk
            return response
        stats.status(200)
        stats.streams_started += 1
        try:
            await self._write_events(response, events, len(plan.head) + 1)
            if fault == "stream_cut":
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        except ConnectionResetError:
            stats.streams_cancelled += 1
            return response
        except asyncio.CancelledError:
            stats.streams_cancelled += 1
            raise
        if fault is None:
            stats.streams_completed += 1
        return response

    async def _write_events(
        self, response: web.StreamResponse, events: list[bytes], first: int
    ) -> None:
        """Write the first group at once, then one event per ``chunk_delay``."""
        delay = self._chunk_delay_s
        if delay <= 0:
            await response.write(b"".join(events))
            return
        await response.write(b"".join(events[:first]))
        for event in events[first:]:
            await asyncio.sleep(delay)
            await response.write(event)
