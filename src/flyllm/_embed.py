"""The embeddings driver: inputs split into requests, each request driven through the same
attempt loop as generation (routing, failover, breaker, limits, hooks, usage per instance and
task).

Inputs are packed in order into requests that fit the candidates' limits: the smallest
``max_inputs`` and ``max_tokens`` of their providers (``EmbeddingLimits``), the smallest
tokens-per-minute limit, and the caller's ``batch_size``; tokens are estimated as
characters / 4 + 1 per input. An embedding task's instances share one model (the manager
checks it), so these are the chosen instance's limits. Each request is sized when a worker
takes it, to the tpm headroom the candidates have at that moment (``Batch.budget``): a
request that fits what a window still takes goes now instead of waiting for a whole
window, and a window with little room left gets a full-size request that waits for it
rather than a trickle of tiny ones. Requests are booked on the rate limits at the estimate
scaled by what the provider billed for the task's answered requests so far (``Tally``), so
that an estimate above the real count does not leave each window part empty. A request the
provider refuses as too large (ContextLengthError: one input over the model's limit, or too
many tokens in total) is split in half and each half retried; a single input refused so is
that input's own error.
Other failures fail the inputs of that request only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from flyllm._tasks import gather_or_cancel
from flyllm._wire import HttpRequest, HttpResponse, Timeouts
from flyllm.errors import (
    ContextLengthError,
    FlyLLMError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderError,
)
from flyllm.providers.base import EmbeddingProvider, Embeddings
from flyllm.routing.attempts import Attempt, AttemptEngine, AttemptLoop, Plan, unexpected_error
from flyllm.routing.instance import LlmInstance
from flyllm.types import EmbeddingResult, Usage

__all__ = [
    "Batch",
    "Packer",
    "Piece",
    "Send",
    "Tally",
    "embed_all",
    "input_tokens",
    "per_input_results",
    "whole_result",
]

Send = Callable[[HttpRequest, Timeouts], Awaitable[HttpResponse]]
"""The transport's send."""


def input_tokens(text: str) -> int:
    """The token estimate of one input: characters / 4, plus one."""
    return len(text) // 4 + 1


@dataclass(slots=True, frozen=True)
class Piece:
    """The outcome of one request (or of one input refused alone): the inputs ``start`` to
    ``stop`` of the batch, their ``embeddings`` or the ``error``, the instance that answered,
    the attempts made and the seconds it took."""

    start: int
    stop: int
    embeddings: Embeddings | None
    error: FlyLLMError | None
    instance: LlmInstance | None
    attempts: int
    latency: float


SMALLEST_SHARE = 8
"""A tpm headroom under ``max_tokens / SMALLEST_SHARE`` is too little to size a request to:
the request is packed full and waits for the window instead. (A quarter wasted a fifth of
each window in the benchmark: three full requests left too little for a fourth.)"""


TALLY_SPAN = 1_000_000
"""Estimated tokens past which a Tally halves its sums (about the last million count)."""


@dataclass(slots=True)
class Tally:
    """Estimated and billed tokens of answered requests (of a task: the manager keeps one per
    task across calls)."""

    estimated: int = 0
    billed: int = 0

    def add(self, estimated: int, billed: int) -> None:
        """Count one answered request; past ``TALLY_SPAN`` estimated tokens both sums are
        halved, so that the ratio follows a change in the texts instead of their history."""
        self.estimated += estimated
        self.billed += billed
        if self.estimated > TALLY_SPAN:
            self.estimated //= 2
            self.billed //= 2

    def ratio(self) -> float:
        """Billed over estimated tokens: 1 until an answer came, then within 1/4 and 4."""
        if not self.estimated or not self.billed:
            return 1.0
        return min(4.0, max(0.25, self.billed / self.estimated))


@dataclass(slots=True, frozen=True)
class Batch:
    """The inputs and how to send them: ``plan`` the resolved request (its tiers, parameters,
    attempts; its tokens are set per request), ``max_inputs`` and ``max_tokens`` per
    request."""

    inputs: Sequence[str]
    plan: Plan
    max_inputs: int
    max_tokens: int
    tally: Tally = field(default_factory=Tally)

    def booked(self, tokens: int) -> int:
        """The tokens to book on the rate limits for a request estimated at ``tokens``: scaled
        by what was billed so far, never above ``max_tokens`` (within every candidate's tpm)."""
        return max(1, min(self.max_tokens, round(tokens * self.tally.ratio())))

    def budget(self, now: float) -> int:
        """The estimated tokens the next request may carry at ``now``: the largest tpm
        headroom among the enabled candidates, when it is worth a request of its own (at
        least ``max_tokens / SMALLEST_SHARE``, and at least tpm / rpm where an rpm limit makes
        small requests waste it); else ``max_tokens``, the request then waiting for room.
        Headroom is billed tokens: it is turned into estimated ones by the tally's ratio."""
        ratio = self.tally.ratio()
        best = 0.0
        for tier in self.plan.tiers:
            for c in tier.candidates:
                if not c.enabled:
                    continue
                limiter = c.limiter
                free = limiter.tokens_free(now)
                if free is None:  # no tpm limit: a full request goes now
                    return self.max_tokens
                free /= ratio
                floor = self.max_tokens / SMALLEST_SHARE
                if limiter.rpm:
                    floor = max(floor, (limiter.tpm or 0) / limiter.rpm / ratio)
                if free >= floor:
                    best = max(best, free)
        return min(self.max_tokens, int(best)) if best else self.max_tokens


class Packer:
    """Consecutive ranges of ``inputs``, each sized when it is taken."""

    __slots__ = ("_inputs", "_next")

    def __init__(self, inputs: Sequence[str]) -> None:
        self._inputs = inputs
        self._next = 0

    def take(self, max_inputs: int, max_tokens: int, full: int | None = None) -> range | None:
        """The next range within ``max_inputs`` and ``max_tokens`` (an input larger than
        ``max_tokens`` goes alone, unless ``full`` is given: a budget that cannot hold the
        next input is no room at all, and the range is packed to ``full`` instead); None when
        every input has been taken."""
        inputs, start = self._inputs, self._next
        if full is not None and start < len(inputs) and input_tokens(inputs[start]) > max_tokens:
            max_tokens = full
        stop, tokens, end = start, 0, min(len(inputs), start + max_inputs)
        while stop < end:
            cost = input_tokens(inputs[stop])
            if stop > start and tokens + cost > max_tokens:
                break
            tokens += cost
            stop += 1
        self._next = stop
        return range(start, stop) if stop > start else None


async def embed_all(
    engine: AttemptEngine,
    send: Send,
    batch: Batch,
    concurrency: int,
    done: Callable[[Piece], None],
) -> None:
    """Embed every input of ``batch``, at most ``concurrency`` requests at once, each sized
    to the tpm headroom when it is taken; ``done`` is called with each piece as it ends (in
    no particular order). Raises only when the caller leaves."""
    packer = Packer(batch.inputs)

    async def worker() -> None:
        # Taken and booked with no await between (a local store books at once), so that the
        # headroom a request was sized to is still there.
        while r := packer.take(batch.max_inputs, batch.budget(engine.clock()), batch.max_tokens):
            await _embed_range(engine, send, batch, r.start, r.stop, done)

    await gather_or_cancel(worker() for _ in range(concurrency))


async def _embed_range(
    engine: AttemptEngine,
    send: Send,
    batch: Batch,
    start: int,
    stop: int,
    done: Callable[[Piece], None],
) -> None:
    """One request for inputs ``start:stop``; halves of it again when it is too large."""
    began = time.perf_counter()
    inputs = batch.inputs[start:stop]
    tokens = sum(input_tokens(t) for t in inputs)
    booked = batch.booked(tokens)
    plan = dataclasses.replace(batch.plan, tokens=booked, estimate=(booked, 0))
    loop = AttemptLoop(engine, plan)
    try:
        embeddings, instance = await _drive(loop, send, inputs, began)
    except ContextLengthError as err:
        if stop - start > 1:  # too large: each half again
            middle = (start + stop) // 2
            await _embed_range(engine, send, batch, start, middle, done)
            await _embed_range(engine, send, batch, middle, stop, done)
            return
        done(Piece(start, stop, None, err, None, loop.attempts, time.perf_counter() - began))
        return
    except FlyLLMError as err:
        done(Piece(start, stop, None, err, None, loop.attempts, time.perf_counter() - began))
        return
    latency = time.perf_counter() - began
    batch.tally.add(tokens, embeddings.usage.total_tokens)
    done(Piece(start, stop, embeddings, None, instance, loop.attempts, latency))


async def _drive(
    loop: AttemptLoop, send: Send, inputs: Sequence[str], began: float
) -> tuple[Embeddings, LlmInstance]:
    """Attempt after attempt until one answers or the loop gives up (raising the typed
    error); each outcome recorded once, the request's end reported once."""
    try:
        while not isinstance(attempt := await loop.next(), FlyLLMError):
            try:
                embeddings, headers = await _attempt(attempt, send, inputs)
            except ProviderError as err:
                if loop.failed(attempt, err):
                    continue
                raise
            except FlyLLMError:  # e.g. a parameter the model cannot take
                loop.abandoned(attempt)
                raise
            loop.succeeded(attempt, embeddings.usage, headers)
            loop.finish(True, None, time.perf_counter() - began)
            return embeddings, attempt.instance
        raise attempt
    except FlyLLMError as err:
        loop.failed_response(err, began)
        raise
    except Exception as exc:  # nothing may escape the typed tree
        typed = loop.crashed(exc)
        loop.failed_response(typed, began)
        raise typed from exc
    except BaseException:
        loop.cancelled(began)
        raise


async def _attempt(
    attempt: Attempt, send: Send, inputs: Sequence[str]
) -> tuple[Embeddings, dict[str, str]]:
    """Build, send and parse one embeddings attempt; raises only FlyLLMErrors."""
    instance = attempt.instance
    provider = cast(EmbeddingProvider, instance.provider)
    try:
        request = provider.build_embed(instance.endpoint, inputs, attempt.params)
    except FlyLLMError as err:
        if type(err) is InvalidRequestError:  # say which instance cannot take it
            raise InvalidRequestError(f"instance {instance.id} ({instance.name}): {err}") from err
        raise
    except Exception as exc:
        raise unexpected_error(exc, "build", None, instance) from exc
    if request.notes:
        instance.note_once(request.notes)
    try:
        response = await send(request, attempt.timeouts)
    except FlyLLMError:
        raise
    except Exception as exc:
        raise unexpected_error(exc, "send", None, instance) from exc
    try:
        embeddings = provider.parse_embed(response, instance.endpoint)
    except FlyLLMError:
        raise
    except Exception as exc:
        raise unexpected_error(exc, "read", response.status, instance) from exc
    if len(embeddings.vectors) != len(inputs):
        raise MalformedResponseError(
            f"the answer has {len(embeddings.vectors)} vectors for {len(inputs)} inputs",
            status=response.status,
            provider=instance.provider_type.value,
        )
    if not embeddings.usage.total_tokens:  # none reported (Gemini): estimate, and say so
        tokens = sum(input_tokens(t) for t in inputs)
        embeddings = dataclasses.replace(embeddings, usage=Usage(tokens, 0, tokens))
        instance.note_once((_ESTIMATED,))
    return embeddings, dict(response.headers)


_ESTIMATED = "the answer reports no usage for embeddings; flyllm estimates it as characters / 4"


def whole_result(pieces: Sequence[Piece], count: int) -> EmbeddingResult:
    """One result for all ``count`` inputs, vectors in input order; raises the error of the
    first input that failed."""
    ordered = sorted(pieces, key=lambda p: p.start)
    for piece in ordered:
        if piece.error is not None:
            raise piece.error
    vectors = [v for p in ordered if p.embeddings for v in p.embeddings.vectors]
    assert len(vectors) == count
    usage = Usage()
    for piece in ordered:
        assert piece.embeddings is not None
        usage = usage + piece.embeddings.usage
    last = ordered[-1].instance if ordered else None
    return EmbeddingResult(
        vectors=vectors,
        usage=usage,
        instance_id=last.id if last else None,
        provider=last.provider_type.value if last else None,
        model=last.model if last else None,
        latency=max((p.latency for p in ordered), default=0.0),
        attempts=sum(p.attempts for p in ordered),
    )


def per_input_results(piece: Piece, inputs: Sequence[str]) -> list[EmbeddingResult]:
    """One result per input of ``piece`` (``inputs`` are the batch's): its vector and its
    share of the request's usage (by estimated tokens; the shares add up to the total), or
    the request's error."""
    count = piece.stop - piece.start
    if piece.embeddings is None:
        err = piece.error
        assert err is not None
        kind = err.kind.value if err.kind is not None else None
        failed = EmbeddingResult(
            vectors=(), success=False, latency=piece.latency, attempts=piece.attempts,
            error=str(err), error_kind=kind, exception=err,
            instance_id=err.instance_id if isinstance(err, ProviderError) else None,
            provider=err.provider if isinstance(err, ProviderError) else None,
        )  # fmt: skip
        return [failed] * count
    instance = piece.instance
    assert instance is not None
    weights = [input_tokens(t) for t in inputs[piece.start : piece.stop]]
    prompt = _shares(piece.embeddings.usage.prompt_tokens, weights)
    total = _shares(piece.embeddings.usage.total_tokens, weights)
    return [
        EmbeddingResult(
            vectors=(vector,),
            usage=Usage(prompt_tokens=p, total_tokens=t),
            instance_id=instance.id,
            provider=instance.provider_type.value,
            model=instance.model,
            latency=piece.latency,
            attempts=piece.attempts,
        )
        for vector, p, t in zip(piece.embeddings.vectors, prompt, total, strict=True)
    ]


def _shares(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split in proportion to ``weights``, the remainder to the first ones."""
    whole = sum(weights) or 1
    shares = [amount * w // whole for w in weights]
    for i in range(amount - sum(shares)):
        shares[i % len(shares)] += 1
    return shares
