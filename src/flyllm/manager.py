"""LlmManager: task routing, load balancing, failover, batches and usage over many instances.

One request flows: resolve its task and messages (bad input fails here, before anything is
sent) -> candidates = enabled instances serving the task -> the strategy orders them -> the
provider builds the HTTP request -> the transport sends it -> the provider parses the answer or
classifies the failure -> the failure's kind decides: give up (the request itself is wrong),
fail over to the next candidate, or, when every candidate has failed, wait and start a new
round, within ``max_attempts``. Which instance each attempt takes, and when to wait, lives in
routing/attempts.py; circuit breakers and backoff in routing/resilience.py; rate limits in
routing/limits.py; the one driver of every attempt in _engine.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from flyllm._display import mask_url
from flyllm._embed import Batch, Piece, Tally, embed_all, per_input_results, whole_result
from flyllm._engine import Engine
from flyllm._images import DEFAULT_MAX_IMAGE_BYTES, needs_fetcher
from flyllm._tasks import gather_or_cancel
from flyllm._toolloop import ToolFunctions, run_tools
from flyllm._toolplan import (
    capable,
    declared_capabilities,
    needs,
    no_capable_instance,
    prompt_chars,
)
from flyllm._transport import DEFAULT_MAX_RESPONSE_BYTES, Transport
from flyllm._wire import Timeouts
from flyllm.errors import (
    ConfigurationError,
    FlyLLMError,
    InvalidRequestError,
    NoInstanceAvailableError,
)
from flyllm.observe.events import Hook
from flyllm.observe.progress import Progress
from flyllm.params import conversation, output_format, tool_set
from flyllm.pricing import ModelPrice
from flyllm.providers import get_provider, requires_key, resolve_provider_type
from flyllm.providers.base import Endpoint, Provider
from flyllm.routing.attempts import Plan, Tier, failure_response, unexpected_error
from flyllm.routing.instance import InstanceHealth, InstanceInfo, LlmInstance
from flyllm.routing.limits import RateLimiter, estimate_tokens
from flyllm.routing.resilience import BreakerPolicy, CircuitBreaker, RetryPolicy
from flyllm.routing.settings import (
    check_addressing,
    check_headers,
    check_params,
    check_provider_params,
    env_base_url,
    make_store,
    non_negative_number,
    positive_int,
    positive_number,
)
from flyllm.routing.state import StateStore
from flyllm.routing.strategies import Strategy, make_strategy
from flyllm.streaming import LlmStream
from flyllm.types import (
    Capability,
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    LlmResponse,
    Message,
    ProviderType,
    TaskDefinition,
    Usage,
)
from flyllm.usage import (
    InstanceUsage,
    UsageTally,
    format_health_table,
    format_usage_table,
    instance_cost,
    usage_report,
)

if TYPE_CHECKING:
    from flyllm.config.builder import LlmManagerBuilder
    from flyllm.discovery import ModelInfo

__all__ = ["LlmManager"]

_log = logging.getLogger("flyllm")

DEFAULT_MAX_CONCURRENCY = 64


class LlmManager:
    """Routes generation requests over provider instances with failover.

    ``strategy`` is a name from ``flyllm.strategies.STRATEGIES`` or a Strategy object;
    ``max_attempts`` bounds the attempts per request and per task of its fallback chain
    (overridable per request). Each attempt may take ``connect_timeout`` to connect and
    ``read_timeout`` for the response head and then the whole answer (for a stream: between two
    complete events); ``deadline`` bounds a whole
    request across attempts and waits (None: no bound); all three are settable per instance and
    per request too. ``retry_policy`` paces new rounds over failed instances; ``breaker`` says
    when an instance's circuit opens. ``max_concurrency`` is batch_generate's default bound;
    answers larger than ``max_response_bytes`` are cut off. ``clock`` (monotonic seconds) and
    ``sleep`` are injectable so tests of waits run instantly. ``prices`` maps model names to
    ModelPrice, overriding the bundled prices. ``state`` shares instance stats between
    processes: a ``redis://`` URL or a StateStore (default: in this process only).
    ``max_image_bytes`` bounds each image flyllm downloads for a provider that takes images
    only as bytes (an image URL it cannot fetch itself). Use
    ``async with LlmManager(...) as manager`` or call ``aclose()``.
    """

    def __init__(
        self,
        strategy: str | Strategy = "least_recently_used",
        max_attempts: int = 3,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        deadline: float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry_policy: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        prices: Mapping[str, ModelPrice] | None = None,
        state: str | StateStore | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> None:
        positive_int("max_attempts", max_attempts)
        positive_int("max_image_bytes", max_image_bytes)
        positive_int("max_concurrency", max_concurrency)
        positive_int("max_response_bytes", max_response_bytes)
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout),
                            ("deadline", deadline)):  # fmt: skip
            positive_number(name, value, allow_none=name == "deadline")
        self.strategy = make_strategy(strategy)
        self.max_attempts = max_attempts
        self.max_concurrency = max_concurrency
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.deadline = deadline
        self.retry_policy = retry_policy or RetryPolicy()
        self.breaker_policy = breaker or BreakerPolicy()
        self.clock = clock
        self.sleep = sleep
        self.max_image_bytes = max_image_bytes
        self._transport = Transport(max_response_bytes=max_response_bytes)
        self._store: StateStore = make_store(state, clock)
        self._instances: dict[int, LlmInstance] = {}
        self._tasks: dict[str, TaskDefinition] = {}
        self._by_task: dict[str, list[LlmInstance]] = {}
        self._all: list[LlmInstance] = []
        self._next_id = 0
        self._tier_cache: dict[str | None, tuple[Tier, ...]] = {}
        self._hooks: list[Hook] = []
        # Billed over estimated embedding tokens per task, kept across calls so that each
        # call (a `flyllm embed` group) books its first requests at what is billed.
        self._embed_tallies: dict[str | None, Tally] = {}
        self._prices = dict(prices or {})
        self._task_usage: dict[tuple[str | None, int], UsageTally] = {}  # (task, instance id)
        # Drives every attempt, streamed or not (flyllm._engine).
        self._engine = Engine(self, self._store, self._transport, self._hooks, self._count_task)

    @classmethod
    def builder(cls) -> LlmManagerBuilder:
        """A fluent builder, as in the original FlyLLM: ``LlmManager.builder().define_task(...)
        .add_instance(...).supports(...).build()``."""
        from flyllm.config.builder import LlmManagerBuilder

        return LlmManagerBuilder()

    @classmethod
    def from_config(cls, path: str | os.PathLike[str]) -> LlmManager:
        """A manager built from a TOML (or YAML) config file; see flyllm.config."""
        from flyllm.config.loader import load_config

        return load_config(path)

    # -- set-up ------------------------------------------------------------------------------

    def define_task(self, task: TaskDefinition) -> None:
        """Register a task. The same name again with other parameters is a ConfigurationError."""
        if not isinstance(task, TaskDefinition):
            raise ConfigurationError(f"expected a TaskDefinition, got {task!r}")
        if not task.name or not isinstance(task.name, str):
            raise ConfigurationError("a task needs a non-empty name")
        try:
            params = check_params(task.parameters)
            provider_params = check_provider_params(task.provider_params)
        except (TypeError, ValueError, ConfigurationError) as exc:
            raise ConfigurationError(f"task {task.name!r}: {exc}") from None
        fallback = task.fallback
        if isinstance(fallback, str) or not all(isinstance(f, str) for f in fallback):
            raise ConfigurationError(f"task {task.name!r}: fallback must be a list of task names")
        if task.name in fallback:
            raise ConfigurationError(f"task {task.name!r} cannot fall back to itself")
        normalised = TaskDefinition(
            task.name, params, provider_params, fallback=tuple(fallback),
            fallback_on_content_filter=task.fallback_on_content_filter,
            mixed_models=task.mixed_models,
        )  # fmt: skip
        known = self._tasks.get(task.name)
        if known is not None:
            if known != normalised:  # compared normalised: ["x"] and ("x",) are the same task
                raise ConfigurationError(
                    f"task {task.name!r} is already defined differently: {known!r} vs "
                    f"{normalised!r}"
                )
            return
        self._tasks[task.name] = normalised
        self._tier_cache.clear()
        self._by_task.setdefault(task.name, [])

    def add_provider(
        self,
        provider: ProviderType | str,
        api_key: str,
        model: str,
        tasks: Iterable[TaskDefinition | str] = (),
        enabled: bool = True,
        *,
        base_url: str | None = None,
        name: str | None = None,
        weight: float = 1.0,
        parameters: Mapping[str, Any] | None = None,
        provider_params: Mapping[str, Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        api_version: str | None = None,
        options: Mapping[str, Any] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrent: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        price: ModelPrice | None = None,
        capabilities: Iterable[Capability] | None = None,
    ) -> int:
        """Add an instance and return its id (0, 1, 2... in order of adding).

        ``tasks`` are TaskDefinitions (registered here) or names of tasks already defined.
        ``base_url`` follows the official SDK's convention for the provider; ``headers`` are
        sent with every request of this instance; ``api_version`` picks the provider's API
        version (Anthropic "2023-06-01" by default, Google "v1" by default); ``options`` carry
        provider-specific addressing. ``rpm``, ``tpm`` and ``max_concurrent`` are client-side
        limits (requests and tokens per minute, requests at once); ``connect_timeout`` and
        ``read_timeout`` override the manager's for this instance; ``price`` overrides the
        bundled price of its model. ``capabilities`` narrows what requests it takes beyond text
        (None: all its provider can; e.g. ``[]`` for a model without tool calling): requests
        that need a capability it lacks go to other instances.
        """
        ptype = resolve_provider_type(provider)
        impl = get_provider(ptype)
        if not isinstance(model, str) or not model:
            raise ConfigurationError("add_provider needs a model name")
        if not isinstance(api_key, str):
            raise ConfigurationError(f"the api_key for {ptype.value} {model} must be a string")
        if not api_key and requires_key(ptype):
            raise ConfigurationError(f"the api_key for {ptype.value} {model} is empty")
        url = base_url or env_base_url(ptype) or impl.default_base_url
        if not url:
            raise ConfigurationError(f"{ptype.value} instances need a base_url")
        instance_id = self._next_id
        label = name or f"{ptype.value}/{model}#{instance_id}"
        try:  # the field first: config files prefix the message with where it was set
            non_negative_number("weight", weight)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (instance {label!r})") from None
        try:
            extra_headers = check_addressing(api_key, url, api_version, headers)
            params = check_params(parameters)
            pparams = check_provider_params(provider_params)
            for limit_name, limit in (
                ("rpm", rpm),
                ("tpm", tpm),
                ("max_concurrent", max_concurrent),
            ):
                if limit is not None:
                    positive_int(limit_name, limit)
            for timeout_name, timeout in (("connect_timeout", connect_timeout),
                                          ("read_timeout", read_timeout)):  # fmt: skip
                positive_number(timeout_name, timeout, allow_none=True)
            able = declared_capabilities(capabilities, impl.capabilities, ptype.value)
        except (TypeError, ValueError, ConfigurationError) as exc:
            raise ConfigurationError(f"instance {label!r}: {exc}") from None
        task_names = self._register_tasks(tasks)
        endpoint = Endpoint(
            model, api_key, url.rstrip("/"), api_version, extra_headers, dict(options or {})
        )
        _dry_build(impl, endpoint, label)
        instance = LlmInstance(
            id=instance_id,
            name=label,
            provider_type=ptype,
            provider=impl,
            endpoint=endpoint,
            tasks=frozenset(task_names),
            enabled=bool(enabled),
            weight=float(weight),
            parameters=params,
            provider_params=pparams,
            breaker=CircuitBreaker(self.breaker_policy),
            limiter=RateLimiter(rpm, tpm, max_concurrent),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            price=price or self._prices.get(model),
            default_timeouts=Timeouts(
                connect_timeout or self.connect_timeout, read_timeout or self.read_timeout
            ),
            capabilities=able,
        )
        self._tier_cache.clear()
        self._next_id += 1
        self._instances[instance_id] = instance
        self._all.append(instance)
        for task_name in task_names:
            self._by_task[task_name].append(instance)
        return instance_id

    def _register_tasks(self, tasks: Iterable[TaskDefinition | str]) -> list[str]:
        if isinstance(tasks, str | TaskDefinition):
            tasks = [tasks]
        names: list[str] = []
        for task in tasks:
            if isinstance(task, TaskDefinition):
                self.define_task(task)
                names.append(task.name)
            elif isinstance(task, str) and task in self._tasks:
                names.append(task)
            else:
                raise ConfigurationError(
                    f"unknown task {task!r}: pass a TaskDefinition or define_task() it first"
                )
        return names

    def _instance(self, instance_id: int) -> LlmInstance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise ConfigurationError(f"no instance with id {instance_id}") from None

    def enable_instance(self, instance_id: int) -> None:
        """Let requests go to this instance again."""
        self._instance(instance_id).enabled = True

    def disable_instance(self, instance_id: int) -> None:
        """Send no new request to this instance (requests in flight finish)."""
        self._instance(instance_id).enabled = False

    def remove_instance(self, instance_id: int) -> None:
        """Forget this instance; its id is never reused. Its usage leaves token_usage()."""
        instance = self._instances.pop(instance_id, None)
        if instance is None:
            raise ConfigurationError(f"no instance with id {instance_id}")
        self._tier_cache.clear()
        instance.enabled = False
        self._all = [i for i in self._all if i is not instance]
        for task_name in instance.tasks:
            self._by_task[task_name] = [i for i in self._by_task[task_name] if i is not instance]

    def instances(self) -> list[InstanceInfo]:
        """A read-only snapshot of each instance (id, name, provider, model, tasks, enabled,
        weight, masked base URL, health and counts), in order of adding. Change instances
        through ``enable_instance``/``disable_instance``/``remove_instance``."""
        now = self.clock()
        return [i.info(now) for i in self._all]

    @property
    def tasks(self) -> Mapping[str, TaskDefinition]:
        """The defined tasks by name."""
        return dict(self._tasks)

    # -- generation --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> LlmResponse:
        """Answer one request. Raises on failure, only FlyLLMErrors: InvalidRequestError or
        NoInstanceAvailableError before sending; the request's own error (BadRequestError,
        ContextLengthError, ContentFilterError...) as is; AllAttemptsFailedError when every
        allowed attempt failed (an exception no layer classified counts as the typed error of
        its phase, its cause chained). Cancelling the call frees its attempt at once and ends
        the request with reason "cancelled"."""
        response = await self._answer(request)
        if not response.success:
            assert response.exception is not None
            raise response.exception
        return response

    async def try_generate(self, request: GenerationRequest) -> LlmResponse:
        """Answer one request without raising for its failure: what ``generate`` would raise
        comes back as an LlmResponse with ``success=False``, ``error`` and ``error_kind`` (as
        a batch item does). Only leaving (cancellation, Ctrl-C) still raises."""
        try:
            return await self._answer(request)
        except Exception as exc:  # a bug below must not escape a call promised not to raise
            return failure_response(unexpected_error(exc, "request"), 0, 0.0)

    async def generate_sequentially(
        self, requests: Iterable[GenerationRequest]
    ) -> list[LlmResponse]:
        """Answer the requests one after another; one LlmResponse each, in order. Never raises
        for one request's failure."""
        return [await self.try_generate(r) for r in requests]

    async def batch_generate(
        self,
        requests: Iterable[GenerationRequest],
        max_concurrency: int | None = None,
        *,
        progress: bool = False,
    ) -> list[LlmResponse]:
        """Answer the requests in parallel, at most ``max_concurrency`` at once; one LlmResponse
        each, in input order. Never raises for one request's failure. Memory stays bounded by
        the concurrency, not the batch size: workers pull the next request as they finish.
        ``progress=True`` shows a progress bar (rate, ETA, failures) on stderr when it is a
        terminal, and nothing otherwise."""
        batch = list(requests)
        limit = self.max_concurrency if max_concurrency is None else max_concurrency
        try:  # the set-up rule for the number; a bad value here is the call's own error
            positive_int("max_concurrency", limit)
        except ConfigurationError as exc:
            raise InvalidRequestError(f"bad parameter: {exc}") from None
        results: list[LlmResponse | None] = [None] * len(batch)
        indices = iter(range(len(batch)))

        bar = Progress(len(batch), label="batch") if progress else None

        async def worker() -> None:
            for i in indices:
                response = await self.try_generate(batch[i])
                results[i] = response
                if bar is not None:
                    bar.update(response.success)

        try:
            await gather_or_cancel(worker() for _ in range(min(limit, len(batch))))
        finally:
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Embed the request's inputs: one float32 vector each, in input order. The inputs
        are split into requests by the instances' limits (those run concurrently, at most
        ``max_concurrency`` at once), each routed and failed over like ``generate``. Raises
        like ``generate``: InvalidRequestError (an empty or non-text input, a bad
        ``dimensions``), NoInstanceAvailableError (no instance with embeddings serves the
        task), ConfigurationError (the task's instances name different models or dimensions
        and it does not say ``mixed_models=True``), or the first failed input's error."""
        start = time.perf_counter()
        inputs = _embed_inputs(request.inputs)
        bad = next((i for i, t in enumerate(inputs) if not t), None)
        if bad is not None:
            raise InvalidRequestError(f"input {bad} is empty; the providers refuse empty texts")
        batch = self._embed_batch(
            inputs, request.task, request.dimensions, request.input_type, None
        )
        pieces: list[Piece] = []
        await embed_all(self._engine, self._transport.send, batch, self.max_concurrency,
                        pieces.append)  # fmt: skip
        result = whole_result(pieces, len(inputs))
        return dataclasses.replace(result, latency=time.perf_counter() - start)

    async def embed_batch(
        self,
        texts: Iterable[str],
        task: str | None = None,
        batch_size: int | None = None,
        max_concurrency: int = 16,
        *,
        progress: bool = False,
        dimensions: int | None = None,
        input_type: str | None = None,
    ) -> list[EmbeddingResult]:
        """Embed many texts: one EmbeddingResult per text, in input order, each with its
        one vector (``result.vector``) and its share of its request's usage. Never raises for
        a failure: a text that failed (empty, too long for the model, or in a request that
        failed) has ``success=False`` and the error. Texts go at most ``batch_size`` per
        request (default: as many as the provider's limits allow), ``max_concurrency``
        requests at once; ``progress=True`` shows a progress bar on a terminal."""
        texts = list(texts)
        try:
            positive_int("max_concurrency", max_concurrency)
            if batch_size is not None:
                positive_int("batch_size", batch_size)
        except ConfigurationError as exc:
            raise InvalidRequestError(f"bad parameter: {exc}") from None
        results: list[EmbeddingResult | None] = [None] * len(texts)
        bar = Progress(len(texts), label="embed") if progress else None
        sendable = [i for i, t in enumerate(texts) if isinstance(t, str) and t]
        inputs = [texts[i] for i in sendable]

        def done(piece: Piece) -> None:  # piece indexes ``inputs``
            for offset, result in enumerate(per_input_results(piece, inputs)):
                results[sendable[piece.start + offset]] = result
                if bar is not None:
                    bar.update(result.success)

        for i in sorted(set(range(len(texts))) - set(sendable)):
            err = InvalidRequestError(f"input {i} is empty or not text")
            results[i] = per_input_results(Piece(0, 1, None, err, None, 0, 0.0), ())[0]
        try:
            try:
                batch = self._embed_batch(inputs, task, dimensions, input_type, batch_size)
            except Exception as exc:  # a call promised not to raise: typed, per text
                typed = exc if isinstance(exc, FlyLLMError) else unexpected_error(exc, "request")
                done(Piece(0, len(inputs), None, typed, None, 0, 0.0))
            else:
                if inputs:
                    concurrency = min(max_concurrency, len(inputs))
                    await embed_all(self._engine, self._transport.send, batch, concurrency, done)
        finally:
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]

    def _embed_batch(
        self,
        inputs: list[str],
        task: str | None,
        dimensions: int | None,
        input_type: str | None,
        batch_size: int | None,
    ) -> Batch:
        """The inputs resolved for ``embed_all``: the task's instances with embeddings (one
        model and dimensions unless the task says ``mixed_models``) and the request limits."""
        if dimensions is not None and (
            not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
        ):
            raise InvalidRequestError(f"dimensions must be a positive integer, got {dimensions!r}")
        if input_type not in (None, "document", "query"):
            raise InvalidRequestError(
                f"input_type must be 'document' or 'query', got {input_type!r}"
            )
        tiers = _capable_tiers(self._tiers(task), frozenset({"embeddings"}), task)
        _same_model(tiers)
        params = {k: v for k, v in (("dimensions", dimensions), ("input_type", input_type))
                  if v is not None}  # fmt: skip
        deadline = None if self.deadline is None else self.clock() + self.deadline
        plan = Plan((), tiers, params, {}, self.max_attempts, 0, (0, 0), deadline)
        every = [c for tier in tiers for c in tier.candidates if c.enabled]
        limits = [getattr(c.provider, "embedding_limits") for c in every]  # noqa: B009
        max_inputs = min(x.max_inputs for x in limits)
        answer_room = self._transport.max_response_bytes * 0.9  # JSON around the vectors
        for x in limits:
            per_vector = (dimensions or x.max_dimensions) * x.bytes_per_value + 64
            max_inputs = min(max_inputs, max(1, int(answer_room // per_vector)))
        max_tokens = min([x.max_tokens for x in limits] + [c.limiter.tpm or 10**12 for c in every])
        if batch_size is not None:
            max_inputs = min(max_inputs, batch_size)
        tally = self._embed_tallies.setdefault(task, Tally())
        return Batch(inputs, plan, max_inputs, max_tokens, tally)

    async def run_tools(
        self, request: GenerationRequest, functions: ToolFunctions, *, max_steps: int = 8
    ) -> LlmResponse:
        """Let the model call Python functions until it answers: ask, run the calls it makes,
        append their results, ask again; at most ``max_steps`` requests. Each step is a
        normal ``generate`` (routed, failed over, counted, hooks), so steps may land on
        different providers; a step that fails raises as ``generate`` does.

        ``functions`` maps tool names to plain or async functions, or is a list of them.
        When ``request.tools`` is None each function is offered with the schema of
        ``Tool.from_function``; otherwise the request's tools are offered and each needs a
        function of its name (InvalidRequestError, before anything is sent). Calls of one
        step run concurrently (plain functions in threads, so they never block the event
        loop), with arguments built into the annotated types (dataclasses, enums, tuples);
        their results follow in the calls' order, each naming its tool. A returned
        str is the result as it is, anything else is sent as JSON. These become ``is_error``
        results the model reads, and the loop goes on: a function that raises (its
        exception's type and message, never the traceback), a return value JSON cannot
        carry, arguments that are not a JSON object or break the tool's schema (the function
        is not called), an unknown tool. After a step with tool calls a "required" or named
        ``tool_choice`` becomes "auto", or the model could never stop calling tools.

        Returns the last answer with ``messages`` (the whole transcript: the request's
        conversation, then each assistant turn and its results), ``usage`` and ``attempts``
        summed over steps and ``latency`` of the whole loop. When ``max_steps`` answers
        all asked for tools, raises ToolLoopError carrying the transcript (the last calls
        answered, ready to continue) and that last response. Cancelling cancels the running
        async functions (a plain function's thread runs to its end, its result dropped).
        """
        return await run_tools(self.generate, request, functions, max_steps)

    def stream(self, request: GenerationRequest) -> LlmStream:
        """Stream one request: ``async with manager.stream(req) as stream: async for chunk in
        stream``. Bad input raises here, before anything is sent; provider errors raise while
        iterating (failing over first when no text has reached the caller yet), only
        FlyLLMErrors. Nothing is sent, and no slot taken, until the first chunk is asked for."""
        return LlmStream(self._engine, self._plan(request))

    async def _answer(self, request: GenerationRequest) -> LlmResponse:
        """The response for one request, failed or not; never raises a FlyLLMError."""
        start = time.perf_counter()
        try:
            plan = self._plan(request)
        except FlyLLMError as exc:
            return failure_response(exc, 0, time.perf_counter() - start)
        return await self._engine.complete(plan, start)

    def _plan(self, request: GenerationRequest) -> Plan:
        """The request resolved and checked; raises only FlyLLMErrors."""
        try:
            return self._resolve(request)
        except FlyLLMError:
            raise
        except Exception as exc:  # e.g. a RecursionError on absurdly nested input
            raise unexpected_error(exc, "request") from exc

    def _resolve(self, request: GenerationRequest) -> Plan:
        if not isinstance(request, GenerationRequest):
            raise InvalidRequestError(f"expected a GenerationRequest, got {type(request).__name__}")
        messages = conversation(request)
        tiers = self._tiers(request.task)
        if not any(c.enabled for tier in tiers for c in tier.candidates):
            what = f"task {request.task!r}" if request.task else "requests without a task"
            raise NoInstanceAvailableError(f"no enabled instance serves {what}")
        tools = output = None
        images = False
        if request.tools is not None or request.tool_choice is not None:
            tools = tool_set(request)
        elif request.parallel_tool_calls is not None:
            tools = tool_set(request)  # refuses it: it needs tools
        if request.response_format is not None:
            output = output_format(request)
        if request.messages is not None:
            images = any(m.parts and m.images for m in messages)
        if tools is not None or output is not None or images:  # only instances that can
            tiers = _capable_tiers(tiers, needs(tools, output, images), request.task)
        max_attempts = self.max_attempts if request.max_attempts is None else request.max_attempts
        try:
            if max_attempts is not self.max_attempts:
                positive_int("max_attempts", max_attempts)
            if not (request.deadline is request.connect_timeout is request.read_timeout is None):
                for name in ("deadline", "connect_timeout", "read_timeout"):
                    value = getattr(request, name)
                    if value is not None:
                        positive_number(name, value)
            params = check_params(request.params) if request.params else {}
            provider_params = (
                check_provider_params(request.provider_params) if request.provider_params else {}
            )
        except (TypeError, ValueError, ConfigurationError) as exc:
            raise InvalidRequestError(f"bad parameter: {exc}") from None
        task = tiers[0].task
        max_tokens = params.get("max_tokens") or (
            task.parameters.get("max_tokens") if task else None
        )
        chars = prompt_chars(messages, tools, output)
        tokens = estimate_tokens(chars, max_tokens)
        estimate = (chars // 4 + 1, tokens - chars // 4 - 1)
        deadline = self.deadline if request.deadline is None else request.deadline
        return Plan(
            messages, tiers, params, provider_params, max_attempts, tokens, estimate,
            None if deadline is None else self.clock() + deadline,
            request.connect_timeout, request.read_timeout, tools, output,
            images and needs_fetcher(messages),
        )  # fmt: skip

    def _tiers(self, task_name: str | None) -> tuple[Tier, ...]:
        """The request's task and its fallback chain, each with its instances (cached until the
        tasks or instances change)."""
        cached = self._tier_cache.get(task_name)
        if cached is None:
            cached = self._tier_cache[task_name] = self._resolve_tiers(task_name)
        return cached

    def _resolve_tiers(self, task_name: str | None) -> tuple[Tier, ...]:
        if task_name is None:
            return (Tier(None, self._all),)
        tiers: list[Tier] = []
        pending = [task_name]
        while pending:
            name = pending.pop(0)
            task = self._tasks.get(name)
            if task is None:
                known = ", ".join(sorted(self._tasks)) or "none"
                what = "task" if name == task_name else f"fallback task of {task_name!r},"
                raise NoInstanceAvailableError(f"unknown {what} {name!r}; defined tasks: {known}")
            if all(t.task is not task for t in tiers):
                tiers.append(Tier(task, self._by_task[name]))
                pending.extend(task.fallback)
        return tuple(tiers)

    # -- discovery ---------------------------------------------------------------------------

    async def list_models(
        self,
        provider: ProviderType | str,
        api_key: str,
        base_url: str | None = None,
        *,
        api_version: str | None = None,
        options: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[ModelInfo]:
        """The models a provider offers to this key (its models endpoint, every page), through
        this manager's connection pool. Raises the classified ProviderError on failure."""
        from flyllm.discovery import list_models

        check_headers(headers)
        return await list_models(
            self._transport, provider, api_key, base_url, api_version=api_version,
            options=options, headers=headers, timeouts=Timeouts(self.connect_timeout,
            self.read_timeout),
        )  # fmt: skip

    # -- hooks -------------------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(event)`` for every Event (attempt start and end, waits, request end)."""
        self._hooks.append(hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling ``hook``."""
        self._hooks.remove(hook)

    def _count_task(
        self, task: TaskDefinition | None, instance_id: int, usage: Usage | None
    ) -> None:
        """Per-task accounting for usage_report(): a failure when ``usage`` is None."""
        key = (task.name if task else None, instance_id)
        tally = self._task_usage.get(key)
        if tally is None:
            tally = self._task_usage[key] = UsageTally()
        tally.record(usage)

    # -- health ------------------------------------------------------------------------------

    def instance_health(self) -> list[InstanceHealth]:
        """Each instance's state (closed, cooling, open, half_open, disabled), consecutive and
        total failures, and cooldown left in seconds."""
        now = self.clock()
        return [i.health(now) for i in self._all]

    def print_instance_health(self, file: TextIO | None = None) -> None:
        """Print ``instance_health()`` as a table."""
        print(format_health_table(self.instance_health()), file=file or sys.stdout)

    # -- usage and lifecycle -----------------------------------------------------------------

    def token_usage(self) -> list[InstanceUsage]:
        """Each instance's token totals, requests and failures, in order of adding."""
        return [
            InstanceUsage(
                id=i.id,
                name=i.name,
                provider=i.provider_type.value,
                model=i.model,
                **dataclasses.asdict(i.stats.tally),
                average_latency=i.stats.latency_avg,
            )
            for i in self._all
        ]

    def print_token_usage(self, file: TextIO | None = None) -> None:
        """Print the usage table (``--- Token Usage Statistics ---``) with each instance's cost
        (prices looked up on first use)."""
        rows = self.token_usage()
        costs = [instance_cost(i, r) for i, r in zip(self._all, rows, strict=True)]
        print(format_usage_table(rows, costs), file=file or sys.stdout)

    def usage_report(self) -> dict[str, Any]:
        """Usage and cost per instance, per task and in total, as plain JSON-able data. Costs
        are in USD; ``cost_usd`` is None where no price is known, and ``cost_complete`` says
        whether every price was known."""
        return usage_report(self._all, self.token_usage(), self._instances, self._task_usage)

    def response_cost(self, response: LlmResponse) -> float | None:
        """What ``response`` cost in USD at its instance's price (the instance's own, else the
        bundled one), or None when the price is unknown or the instance is gone."""
        instance_id = response.instance_id
        instance = self._instances.get(instance_id) if instance_id is not None else None
        price = instance.model_price() if instance is not None else None
        return None if price is None else price.cost(response.usage)

    def usage_report_json(self, indent: int | None = 2) -> str:
        """``usage_report()`` as JSON text."""
        return json.dumps(self.usage_report(), indent=indent)

    async def aclose(self) -> None:
        """Close the connection pool (and flush a shared state store). The manager can be used
        again afterwards (it reopens)."""
        await self._store.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> LlmManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _capable_tiers(
    tiers: tuple[Tier, ...], need: frozenset[str], task: str | None
) -> tuple[Tier, ...]:
    """The tiers with only the instances that have what the request ``need``s;
    NoInstanceAvailableError naming what is missing when no enabled one is left."""
    out = tuple(Tier(t.task, capable(t.candidates, need)) for t in tiers)
    if not any(c.enabled for tier in out for c in tier.candidates):
        what = f"task {task!r}" if task else "requests without a task"
        every = {c.id: c for t in tiers for c in t.candidates}
        raise no_capable_instance(what, need, every.values())
    return out


def _embed_inputs(inputs: object) -> list[str]:
    """The request's inputs as a list of texts; InvalidRequestError otherwise."""
    items = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(items, list | tuple) or not items:
        raise InvalidRequestError("inputs must be a text or a non-empty list of texts")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidRequestError(f"input {i} is {type(item).__name__}, not text")
    return list(items)


def _same_model(tiers: tuple[Tier, ...]) -> None:
    """ConfigurationError when the instances that may embed for a task name different models
    or ``dimensions`` (their vectors are not comparable), unless the task allows it."""
    first = tiers[0].task
    if first is not None and first.mixed_models:
        return
    seen: dict[tuple[str, Any], LlmInstance] = {}
    for tier in tiers:
        task_dims = tier.task.parameters.get("dimensions") if tier.task else None
        for c in tier.candidates:  # the task's parameters win over the instance's
            dims = c.parameters.get("dimensions") if task_dims is None else task_dims
            seen.setdefault((c.model, dims), c)
    if len(seen) > 1:
        named = "; ".join(
            f"instance {c.id} ({c.name}): model {m!r}, dimensions {d}"
            for (m, d), c in list(seen.items())[:6]
        )
        what = f"task {first.name!r}" if first else "requests without a task"
        raise ConfigurationError(
            f"the instances that embed for {what} differ ({named}): vectors of different models "
            "or dimensions are not comparable; give each model its own task, or say "
            "TaskDefinition(..., mixed_models=True) on purpose"
        )


def _dry_build(impl: Provider, endpoint: Endpoint, label: str) -> None:
    """Build a request once at set-up, so that addressing mistakes (an Azure resource missing,
    URL credentials beside an Authorization header...) fail now, naming the instance."""
    try:
        dry = impl.build(endpoint, (Message("user", "ping"),), {})
        if "@" in urlsplit(dry.url).netloc and any(
            h.lower() == "authorization" for h in dry.headers
        ):  # aiohttp refuses to send both: say so now, not on every request
            raise ConfigurationError(
                f"base_url {mask_url(endpoint.base_url)!r} carries credentials (user:password@) "
                f"but the requests also carry an Authorization header: remove one of them"
            )
    except ConfigurationError as exc:
        raise ConfigurationError(f"instance {label!r}: {exc}") from None
    except Exception as exc:  # a provider tripping over an odd option: still set-up
        err = unexpected_error(exc, "build", None, endpoint=endpoint)
        raise ConfigurationError(f"instance {label!r}: {err}") from exc
