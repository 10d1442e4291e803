"""The gateway's aiohttp application: one handler shape for every client protocol.

Per request: authenticate the virtual key, read the body (bounded), let the dialect read it,
resolve the model to a task and check the key may use it, admit the request against the key's
limits, then call the manager (``generate`` or ``stream``) and render the answer, or the error,
in the caller's protocol. Nothing here knows a provider: the manager does the routing.

Streams: the status line and headers wait for the first chunk, so everything that fails before
any output (every attempt, every failover) still becomes a proper HTTP error; after it, an
error is an event in the stream. A client that disconnects cancels the handler (the runner
enables aiohttp's handler cancellation), which closes the upstream connection at once.

Shutdown (flyllm.server.run): the server stops accepting and lets requests finish; past the
grace, :meth:`Gateway.cancel_in_flight` ends what is left with a 503, or with an error event in
a stream that has started, so every caller gets an answer rather than a reset connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from flyllm.manager import LlmManager
from flyllm.server.anthropic_messages import ANTHROPIC, add_anthropic_routes
from flyllm.server.dialect import Call, Dialect
from flyllm.server.errors import GatewayError, bad_request, classify
from flyllm.server.keys import VirtualKey
from flyllm.server.ledger import KeyGate, KeyLedger, MemoryLedger, Ticket
from flyllm.server.metrics import MISSING, gateway_metrics
from flyllm.server.openai_chat import OpenAIChat
from flyllm.server.openai_embeddings import OpenAIEmbeddings
from flyllm.server.settings import GatewaySettings
from flyllm.types import GenerationRequest, LlmResponse

__all__ = ["Gateway"]

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_KEY_HEADERS = ("x-api-key", "x-goog-api-key")
_READY = frozenset({"closed", "half_open", "cooling"})  # cooling: back within seconds
_SHUTTING_DOWN = GatewayError(
    503, "unavailable", "the gateway is shutting down and this request did not finish within "
    "its grace period; send it again", retry_after=1.0,
)  # fmt: skip


class Gateway:
    """``flyllm serve``'s request handling over one LlmManager (which it does not own)."""

    def __init__(
        self,
        manager: LlmManager,
        settings: GatewaySettings | None = None,
        ledger: KeyLedger | None = None,
    ) -> None:
        self.manager = manager
        self.settings = settings or GatewaySettings()
        self.metrics = gateway_metrics(manager)
        self.gate = KeyGate(manager, ledger or MemoryLedger(), self.metrics)
        self.openai = OpenAIChat()
        self.openai_embeddings = OpenAIEmbeddings()
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6) + f"{os.getpid():x}"
        self._instances: dict[int, tuple[str, str]] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._cancelling = False

    def cancel_in_flight(self) -> int:
        """End every request still being handled with a 503 (an error event in a stream that
        has started): a shutdown past its grace. Returns how many there were."""
        self._cancelling = True
        for task in self._in_flight:
            task.cancel()
        return len(self._in_flight)

    def application(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        add_anthropic_routes(app, self)  # POST /v1/messages and /v1/messages/count_tokens
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_text)
        app.on_cleanup.append(self._close_ledger)
        return app

    # -- routes ---------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions`` (OpenAI)."""
        return await self._generate(request, self.openai)

    async def embeddings(self, request: web.Request) -> web.Response:
        """``POST /v1/embeddings`` (OpenAI) over ``LlmManager.embed``."""
        started = time.perf_counter()
        headers = {self.openai.request_id_header: self._request_id()}
        key: VirtualKey | None = None
        ticket: Ticket | None = None
        outcome = "ok"
        current = asyncio.current_task()
        if current is not None:
            self._in_flight.add(current)
        try:
            key = self.authenticate(request)
            call = self.openai_embeddings.parse(await self._read_json(request))
            task = self._task(call.model, key)
            if key is not None:
                inputs = call.request.inputs
                ticket = await self.gate.admit_texts(
                    key, [inputs] if isinstance(inputs, str) else inputs
                )
            called = time.perf_counter()
            result = await self.manager.embed(dataclasses.replace(call.request, task=task))
            if ticket is not None:  # the key's books take what an answer would show
                ticket.response = LlmResponse(
                    "", True, result.provider, result.model, result.instance_id, result.usage
                )
        except Exception as exc:  # as _generate: every failure in the caller's protocol
            err = classify(exc, deadline_passed=self._late(started))
            outcome = err.kind
            return self._error(self.openai, err, headers)
        except asyncio.CancelledError:
            outcome = "cancelled"
            if not self._shutdown_cancel():
                raise  # the client left: nobody to answer
            return self._error(self.openai, _SHUTTING_DOWN, headers)
        finally:
            if current is not None:
                self._in_flight.discard(current)
            if key is not None:
                self.gate.finish(key, ticket, outcome)
        returned = time.perf_counter()
        body = json.dumps(self.openai_embeddings.render(call, result))
        own = called - started + time.perf_counter() - returned
        self._answer_headers(headers, result.instance_id, result.attempts, own)
        return web.Response(text=body, content_type=_JSON, headers=headers)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the tasks and aliases the caller's key may use, in OpenAI's list
        shape, or in Anthropic's when the request carries ``anthropic-version`` (as the
        anthropic SDK's ``models.list`` does)."""
        anthropic = "anthropic-version" in request.headers
        try:
            key = self.authenticate(request)
        except GatewayError as err:
            return self._error(ANTHROPIC if anthropic else self.openai, err, {})
        names = [*self.manager.tasks, *self.settings.aliases]
        allowed = [n for n in names if key is None or key.allows(self.settings.task_for(n))]
        if anthropic:
            return web.json_response(_anthropic_models(allowed))
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "flyllm"} for n in allowed]
        return web.json_response({"object": "list", "data": data})

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: the process is alive."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz``: 200 while at least one instance can take traffic (now or after a
        short cool-down), 503 when every one is disabled or its circuit is open."""
        ready = [h.name for h in self.manager.instance_health() if h.state in _READY]
        status = 200 if ready else 503
        return web.json_response({"ready": bool(ready), "instances": len(ready)}, status=status)

    async def metrics_text(self, request: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text. Open to loopback callers; from elsewhere it needs
        a valid virtual key when the gateway has keys (the counters name keys and spend)."""
        if self.settings.keys and not _loopback_peer(request):
            try:
                self.authenticate(request)
            except GatewayError as err:
                return self._error(self.openai, err, {})
        if self.metrics is None:
            return web.json_response({"error": MISSING}, status=501)
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _close_ledger(self, app: web.Application) -> None:
        await self.gate.ledger.aclose()  # writes the last settlements of a shared store

    # -- the handler ----------------------------------------------------------------------

    async def _generate(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = self._request_id()
        headers = {dialect.request_id_header: request_id}
        key: VirtualKey | None = None
        ticket: Ticket | None = None
        outcome = "ok"
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            key = self.authenticate(request)
            call = dialect.parse(await self._read_json(request))
            generation = self._route(call, key)
            if key is not None:
                ticket = await self.gate.admit(key, generation)
            if call.stream:
                return await self._stream(
                    request, dialect, call, generation, headers, started, ticket
                )
            called = time.perf_counter()
            response = await self.manager.generate(generation)
            if ticket is not None:
                ticket.response = response
        except GatewayError as err:
            outcome = err.kind
            return self._error(dialect, err, headers)
        except Exception as exc:  # every FlyLLMError and anything unexpected: one answer each
            failure = classify(exc, deadline_passed=self._late(started))
            outcome = failure.kind
            return self._error(dialect, failure, headers)
        except asyncio.CancelledError:
            outcome = "cancelled"
            if not self._shutdown_cancel():
                raise  # the client left (aiohttp cancels its handler): nobody to answer
            return self._error(dialect, _SHUTTING_DOWN, headers)
        finally:
            if task is not None:
                self._in_flight.discard(task)
            if key is not None:  # every way out settles the key's booking
                self.gate.finish(key, ticket, outcome)
        returned = time.perf_counter()
        body = json.dumps(dialect.render(call, response, request_id))
        own = called - started + time.perf_counter() - returned
        self._answer_headers(headers, response.instance_id, response.attempts, own)
        return web.Response(text=body, content_type=_JSON, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        dialect: Dialect,
        call: Call,
        generation: GenerationRequest,
        headers: dict[str, str],
        started: float,
        ticket: Ticket | None = None,
    ) -> web.StreamResponse:
        writer = dialect.stream_writer(call, headers[dialect.request_id_header])
        own = time.perf_counter() - started  # what a header sent before the chunks can hold
        async with self.manager.stream(generation) as stream:
            iterator = aiter(stream)
            try:
                first = await anext(iterator)
            except StopAsyncIteration:
                first = None
            # Before any output: a failure is still an HTTP error (raised to _generate).
            out = web.StreamResponse(headers={**headers, **_SSE_HEADERS})
            if first is not None:
                self._instance_headers(out.headers, first.instance_id)
                out.headers["x-flyllm-overhead-ms"] = f"{own * 1000:.3f}"
            await out.prepare(request)
            watch = _StallWatch(request, self.settings.send_timeout)
            try:
                if first is not None:
                    if ticket is not None:
                        ticket.delivered = True
                    await out.write(writer.start(first) + writer.chunk(first))
                    async for chunk in iterator:
                        data = writer.chunk(chunk)
                        if data:
                            await out.write(data)
                if ticket is not None:
                    ticket.response = stream.response
                await out.write(writer.end(stream.response))
            except ConnectionResetError:  # the client left: leaving the block closes the upstream
                if ticket is not None:
                    ticket.outcome = "cancelled"  # as a client leaving a whole answer counts
                return out
            except Exception as exc:
                failure = classify(exc)
                if ticket is not None:
                    ticket.outcome = failure.kind  # the status line said 200: count the truth
                await out.write(writer.error(failure))
            except asyncio.CancelledError:
                if not self._shutdown_cancel():
                    raise
                if ticket is not None:
                    ticket.outcome = "cancelled"
                await out.write(writer.error(_SHUTTING_DOWN))
            finally:
                watch.close()
        await out.write_eof()
        return out

    def _shutdown_cancel(self) -> bool:
        """Whether a cancellation is :meth:`cancel_in_flight`'s (then it is taken back, so the
        handler can answer), not the client's going away."""
        if not self._cancelling:
            return False
        task = asyncio.current_task()
        if sys.version_info >= (3, 11) and task is not None:
            task.uncancel()
        return True

    # -- steps ----------------------------------------------------------------------------

    def authenticate(self, request: web.Request) -> VirtualKey | None:
        """The caller's virtual key (None when the gateway has no keys); 401 otherwise."""
        ring = self.settings.keys
        if not ring:
            return None
        presented = _presented_key(request.headers)
        if presented is None:
            raise GatewayError(
                401, "authentication", "missing API key: send it as 'Authorization: Bearer "
                "<key>' (or x-api-key / x-goog-api-key)",
            )  # fmt: skip
        key = ring.lookup(presented)
        if key is None:
            raise GatewayError(401, "authentication", "invalid API key")
        if key.expires is not None and key.expired(dt.datetime.now(dt.timezone.utc)):
            self.gate.rejected(key, "expired")
            raise GatewayError(
                401, "authentication", f"this API key ({key.name!r}) expired at "
                f"{key.expires.isoformat()}: ask for a new one",
            )  # fmt: skip
        return key

    def _route(self, call: Call, key: VirtualKey | None) -> GenerationRequest:
        return dataclasses.replace(call.request, task=self._task(call.model, key))

    def _task(self, model: str, key: VirtualKey | None) -> str:
        """The task ``model`` names; 404 when none, 403 when the key may not use it."""
        task = self.settings.task_for(model)
        if task not in self.manager.tasks:
            raise GatewayError(
                404, "not_found", f"the model {model!r} does not exist: GET /v1/models "
                "lists the tasks and aliases this key may use", param="model",
                code="model_not_found",
            )  # fmt: skip
        if key is not None and not key.allows(task):
            raise GatewayError(403, "permission", f"this key may not use {model!r}", param="model")
        return task

    async def _read_json(self, request: web.Request) -> Any:
        try:
            if request.content.is_eof():  # all here already (the usual case): no timer
                raw = await request.read()
            else:  # a body that trickles, or a Content-Length that lies, must not hold us
                raw = await asyncio.wait_for(request.read(), self.settings.body_timeout)
        except asyncio.TimeoutError:
            raise GatewayError(
                408, "invalid_request", f"the request body did not arrive within "
                f"{self.settings.body_timeout:g} s (body_timeout): send it whole and at once",
            ) from None  # fmt: skip
        except web.HTTPRequestEntityTooLarge:
            raise GatewayError(
                413, "too_large",
                f"the request body is over {self.settings.max_body_bytes} bytes",
            ) from None  # fmt: skip
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise bad_request("the request body is not valid JSON") from None

    def _late(self, started: float) -> bool:
        """Whether the manager's deadline has passed since the request came in."""
        deadline = self.manager.deadline
        return deadline is not None and time.perf_counter() - started >= deadline

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):x}"

    def _answer_headers(
        self, headers: dict[str, str], instance_id: int | None, attempts: int, own: float
    ) -> None:
        """The instance, the attempts and ``x-flyllm-overhead-ms``: ``own`` seconds, the
        handler's time outside the manager call (docs/gateway/openai.md defines it)."""
        self._instance_headers(headers, instance_id)
        headers["x-flyllm-attempts"] = str(attempts)
        headers["x-flyllm-overhead-ms"] = f"{own * 1000:.3f}"

    def _instance_headers(self, headers: Any, instance_id: int | None) -> None:
        if instance_id is None:
            return
        found = self._instances.get(instance_id)
        if found is None:
            for info in self.manager.instances():
                self._instances[info.id] = (info.name, info.provider)
            found = self._instances.get(instance_id, ("", ""))
        headers["x-flyllm-instance"], headers["x-flyllm-provider"] = found

    def _error(
        self, dialect: Dialect, err: GatewayError, headers: Mapping[str, str]
    ) -> web.Response:
        out = dict(headers)
        if err.retry_after is not None:
            out["Retry-After"] = str(max(1, round(err.retry_after)))
        body = json.dumps(dialect.render_error(err))
        return web.Response(status=err.status, text=body, content_type=_JSON, headers=out)


def _anthropic_models(names: list[str]) -> dict[str, Any]:
    """Anthropic's model list (one page): a task has no release date, so the epoch stands in,
    as Anthropic's reference allows for an unknown one."""
    data = [
        {"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z",
         "lifecycle": "active"}
        for n in names
    ]  # fmt: skip
    first, last = (names[0], names[-1]) if names else (None, None)
    return {"data": data, "has_more": False, "first_id": first, "last_id": last}


class _StallWatch:
    """Cancels a stream's handler once its client has read nothing for about ``seconds``:
    writing is paused (the socket's buffers are full) at two looks ``seconds`` apart and not
    one byte went out in between. Else a client that stops reading would hold the handler,
    the upstream stream and its key's concurrency slot as long as it keeps the connection.
    Nothing runs per chunk: one timer a stream, looking every ``seconds``."""

    __slots__ = ("_handle", "_last", "_request", "_seconds", "_task")

    def __init__(self, request: web.Request, seconds: float) -> None:
        self._request = request
        self._seconds = seconds
        self._task = asyncio.current_task()
        self._last = -1  # the write buffer's size at the last look, -1: not paused then
        self._handle = asyncio.get_running_loop().call_later(seconds, self._look)

    def _look(self) -> None:
        transport = self._request.transport
        paused = transport is not None and self._request.protocol.writing_paused
        size = transport.get_write_buffer_size() if transport is not None and paused else -1
        if size >= 0 and size == self._last and self._task is not None:
            self._task.cancel()  # as a client that left: the upstream closes, the slot frees
            return
        self._last = size
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._look)

    def close(self) -> None:
        self._handle.cancel()


def _presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in _KEY_HEADERS:
        found = headers.get(name)
        if found:
            return found.strip()
    return None


def _loopback_peer(request: web.Request) -> bool:
    remote = request.remote
    return remote is not None and (
        remote == "::1" or remote.removeprefix("::ffff:").startswith("127.")
    )
