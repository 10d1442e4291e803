"""The contract every provider implements: a pure translator between flyllm's types and one wire
format. Providers never do I/O: the transport sends what ``build`` returns and hands the answer
back to ``parse`` (or, for streams, SSE events to a ``StreamParser``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from flyllm._display import mask_headers, mask_url, url_secrets
from flyllm._wire import NON_SSE_LINE, HttpRequest, HttpResponse, SseEvent, url_scheme
from flyllm.errors import ProviderError
from flyllm.params import OutputFormat, ToolSet
from flyllm.types import (
    NO_DATA,
    Capability,
    FinishReason,
    Message,
    ProviderType,
    ToolCall,
    ToolCallDelta,
    Usage,
    _quick_init,
)

__all__ = [
    "ALL_CAPABILITIES",
    "NON_SSE_LINE",
    "Completion",
    "Delta",
    "EmbeddingLimits",
    "EmbeddingProvider",
    "Embeddings",
    "Endpoint",
    "HttpRequest",
    "HttpResponse",
    "ModelInfo",
    "ModelListing",
    "Provider",
    "ProviderSpec",
    "RateLimitHeaders",
    "SseEvent",
    "StreamParser",
    "ToolSet",
    "url_scheme",
]

ALL_CAPABILITIES: frozenset[Capability] = frozenset(
    {"tools", "named_tool_choice", "structured_output", "images"}
)
"""What a provider's API can do unless it says less (``Provider.capabilities``)."""

SECRET_MIN_LENGTH = 8
"""Credential values shorter than this are placeholders ("EMPTY", "x", "ollama"), not secrets:
redacting them would garble every message that happens to contain the word."""

_CREDENTIAL_HEADER = re.compile(
    r"auth|key|token|secret|passw|cookie|signature|credential|session", re.IGNORECASE
)


@dataclass(slots=True, frozen=True)
class Endpoint:
    """What a provider needs to know about an instance to address it."""

    model: str
    api_key: str = field(repr=False)
    base_url: str
    api_version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific addressing (e.g. an Azure resource and deployment)."""
    secrets: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The credentials this instance sends: the key, and the value of every header whose name
    speaks of one (Authorization, x-api-key, x-goog-api-key, api-key, a gateway's key...),
    with the token of a "Bearer ..." value and the JSON-escaped and percent-encoded forms,
    longest first. Providers redact them from everything a server answers."""

    def __post_init__(self) -> None:
        secrets = credential_values(self.api_key, self.headers, self.base_url)
        object.__setattr__(self, "secrets", secrets)

    def __repr__(self) -> str:
        # Written by hand: header values and the URL's user-info or query may carry keys.
        return (
            f"Endpoint(model={self.model!r}, base_url={mask_url(self.base_url)!r}, "
            f"api_version={self.api_version!r}, headers={mask_headers(self.headers)!r})"
        )


def credential_values(
    api_key: Any, headers: Mapping[Any, Any], base_url: Any = ""
) -> tuple[str, ...]:
    """The secrets of an instance (see ``Endpoint.secrets``); non-text values are skipped."""
    values = [api_key] + [v for k, v in headers.items() if _CREDENTIAL_HEADER.search(str(k))]
    values += url_secrets(base_url)
    found: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            continue
        words = value.split()
        for piece in (value.strip(), words[-1] if words else ""):
            if len(piece) >= SECRET_MIN_LENGTH:
                found.update((piece, json.dumps(piece)[1:-1], quote(piece, safe="")))
                found.add(piece.replace("/", "\\/"))  # JSON may escape "/" too
    return tuple(sorted(found, key=len, reverse=True))


@_quick_init  # built for every answer: see flyllm.types._quick_init
@dataclass(slots=True, frozen=True)
class Completion:
    """A provider's answer translated: text, normalised and raw finish reason, usage, and the
    tool calls in the model's order. ``provider_data`` is state of the assistant turn that
    must be sent back to the same provider family (see ``Message.provider_data``)."""

    content: str
    finish_reason: FinishReason
    raw_finish_reason: str | None
    usage: Usage
    model: str | None = None
    request_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    provider_data: Mapping[str, Mapping[str, Any]] = NO_DATA


@dataclass(slots=True, frozen=True)
class Embeddings:
    """A provider's embeddings answer translated: one float32 vector per input, in input
    order, and the usage (input tokens)."""

    vectors: tuple[Sequence[float], ...]
    usage: Usage
    model: str | None = None
    request_id: str | None = None


@dataclass(slots=True, frozen=True)
class EmbeddingLimits:
    """What one embeddings request may carry: ``max_inputs`` texts, ``max_tokens`` tokens
    summed over them, and ``max_input_tokens`` per text. The engine splits inputs by the
    first two (estimating tokens as characters / 4); the provider judges the third. So that
    an answer stays within the transport's size limit, a request also carries no more
    vectors than fit in it at ``bytes_per_value`` for ``max_dimensions`` values each (or the
    request's ``dimensions``)."""

    max_inputs: int
    max_tokens: int
    max_input_tokens: int
    max_dimensions: int = 3072
    bytes_per_value: float = 24.0


@dataclass(slots=True, frozen=True)
class Delta:
    """What one stream event adds when it is more than text: its ``text`` (may be '') and
    the ``tool_calls`` pieces, in the canonical order (see ToolCallDelta)."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()


class StreamParser(Protocol):
    """Turns one stream's SSE events into deltas; one parser per stream (it keeps state)."""

    def feed(self, event: SseEvent) -> str | Delta:
        """What this event adds: its text ('' for none) or, when it carries tool-call pieces,
        a Delta. Raises ProviderError on an error event."""
        ...

    @property
    def done(self) -> bool:
        """True once the provider's terminator has been seen."""
        ...

    def finish(self) -> Completion:
        """The whole answer, at the end of the body. Raises StreamInterruptedError when the
        terminator never came (never a silently truncated answer)."""
        ...


class Provider(Protocol):
    """One wire format. Implementations are stateless and shared by all instances."""

    name: str
    default_base_url: str
    stream_framing: str
    """How its streams are framed: "sse" (server-sent events) or "ndjson" (one JSON per line)."""
    capabilities: frozenset[Capability]
    """What its API can do (ALL_CAPABILITIES unless it says less); instances may narrow it."""
    image_url_schemes: frozenset[str]
    """The URL schemes of the images it takes by URL (``{"http", "https"}`` for most; Gemini
    only its own file URIs, Ollama none): the engine downloads the others and sends bytes."""

    def accepts_image_url(self, url: str) -> bool:
        """True when the provider fetches this image URL itself; the engine downloads the
        others. By scheme (``image_url_schemes``) unless a provider knows better (Gemini
        takes its File API's https URIs but no other https URL)."""
        ...

    def build(
        self,
        endpoint: Endpoint,
        messages: Sequence[Message],
        params: Mapping[str, Any],
        *,
        stream: bool = False,
        tools: ToolSet | None = None,
        output: OutputFormat | None = None,
    ) -> HttpRequest:
        """The HTTP request for this conversation (its image parts included), merged validated
        parameters, the request's tools and its output format (``response_format``). Raises
        UnsupportedFeatureError for what the provider cannot send, InvalidRequestError for an
        image the provider refuses (format, size)."""
        ...

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The answer in a 2xx response; raises the classified ProviderError otherwise (and for
        refusals, blocked prompts, wrong-shaped and unreadable bodies). With the ``endpoint``
        the request went to, its ``secrets`` are redacted from the body before it is read."""
        ...

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (status, body and headers), its message one
        bounded line with the ``endpoint``'s secrets redacted."""
        ...

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A fresh parser for one streamed answer (redacting the ``endpoint``'s secrets from
        every event)."""
        ...


class EmbeddingProvider(Provider, Protocol):
    """A provider that also embeds (it declares the "embeddings" capability): the pure
    translation of an embeddings request and answer, and its limits as data. Errors are
    classified by the provider's ``classify_error``."""

    embedding_limits: EmbeddingLimits

    def build_embed(
        self, endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
    ) -> HttpRequest:
        """The HTTP request embedding ``inputs`` with the merged parameters (``dimensions``,
        ``input_type`` and provider extras). InvalidRequestError for a parameter the model
        cannot take, before anything is sent."""
        ...

    def parse_embed(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Embeddings:
        """The vectors in a 2xx answer (as many as inputs were sent, in their order); the
        classified ProviderError otherwise (a too-large request is a ContextLengthError)."""
        ...


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """One model a provider offers.

    ``id`` is the name to pass as ``model=`` to ``add_provider`` (on Azure: the model, whose
    deployment is often but not always named alike); ``provider`` the flyllm provider name;
    ``created`` epoch seconds when the provider says; ``context_window`` and
    ``max_output_tokens`` in tokens when the provider says; ``raw`` the provider's own entry.
    """

    id: str
    provider: str
    display_name: str | None = None
    created: int | None = None
    owned_by: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The normalised fields as a JSON-able dict (``raw`` left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "raw"}


Page = tuple[list[ModelInfo], str | None]
"""One page of a model list read: its models and the cursor of the next page (None on the
last one)."""


@dataclass(slots=True, frozen=True)
class ModelListing:
    """How a provider lists its models: the URL of a page (the cursor is None for the first)
    and the reading of one page's JSON (with the provider's name for messages). The paging,
    the sending and the key headers are :mod:`flyllm.discovery`'s and the spec's."""

    url: Callable[[Endpoint, str | None], str]
    page: Callable[[Any, str], Page]


@dataclass(slots=True, frozen=True)
class RateLimitHeaders:
    """One family of rate-limit headers (remaining requests and tokens, and when each window
    resets) and how its reset values read: ``reset_delay(value, clock)`` in seconds, or None."""

    remaining_requests: str
    reset_requests: str
    remaining_tokens: str
    reset_tokens: str
    reset_delay: Callable[[str, Callable[[], float]], float | None]


def no_auth(endpoint: Endpoint) -> dict[str, str]:
    """Auth headers of a provider that takes none."""
    return {}


@dataclass(slots=True, frozen=True)
class ProviderSpec:
    """Every fact flyllm knows about one provider, in one value; the registry, the settings
    and the CLI read these instead of tables of their own.

    ``kind``'s value is the provider's name; ``aliases`` other names it answers to (lower
    case); ``provider`` the shared translator (its ``default_base_url`` is the spec's);
    ``base_url_env`` the environment variable that moves the default base URL, as the
    official SDK reads it, and ``read_base_url_env`` how its value becomes a URL;
    ``key_env`` the variables the CLI reads a key from (default ``<NAME>_API_KEY``);
    ``key_required`` False lets instances have an empty key (local servers); ``auth`` the
    key headers of a request (the provider's ``build`` and the model listing use the same);
    ``models`` how its models are listed; ``rate_limits`` the family of rate-limit headers
    its answers carry, if any."""

    kind: ProviderType
    provider: Provider
    auth: Callable[[Endpoint], dict[str, str]]
    models: ModelListing
    aliases: tuple[str, ...] = ()
    base_url_env: str | None = None
    read_base_url_env: Callable[[str], str] = str.strip
    key_env: tuple[str, ...] = ()
    key_required: bool = True
    rate_limits: RateLimitHeaders | None = None

    def __post_init__(self) -> None:
        if not self.key_env:
            object.__setattr__(self, "key_env", (f"{self.kind.value.upper()}_API_KEY",))

    @property
    def name(self) -> str:
        """The provider's name: its ProviderType's value."""
        return self.kind.value

    @property
    def default_base_url(self) -> str:
        """The base URL instances use when they give none ('' when they must give one)."""
        return self.provider.default_base_url
