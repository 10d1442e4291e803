"""The values that cross flyllm's public API: requests, responses, usage, tasks.

Plain typed dataclasses with slots; nothing here does I/O or knows a provider.
"""

from __future__ import annotations

import base64
import enum
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TypeVar

from flyllm._display import mask_url

__all__ = [
    "Capability",
    "EmbeddingRequest",
    "EmbeddingResult",
    "ErrorKind",
    "FinishReason",
    "GenerationRequest",
    "Image",
    "JsonSchema",
    "LlmResponse",
    "Message",
    "ProviderType",
    "ResponseFormat",
    "Role",
    "StreamChunk",
    "TaskDefinition",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]
"""The roles a conversation may use; each provider gets them in its own shape. A "tool" turn
is the result of one tool call (see ``Message.tool_result``)."""


class _NoData(Mapping[str, Mapping[str, Any]]):
    """An empty, immutable, hashable mapping."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_DATA: Mapping[str, Mapping[str, Any]] = _NoData()
"""The ``provider_data`` of turns, calls and answers that carry none: one shared, read-only
empty mapping (a fresh dict per message and per answer would cost every request)."""

ToolChoice = str
"""Whether and which tools the model must call: "auto" (the model decides), "none" (no tool),
"required" (at least one tool) or the name of one offered tool (that tool)."""

Capability = Literal["tools", "named_tool_choice", "structured_output", "images", "embeddings"]
"""What a request may need of an instance beyond text: "tools" (tool calling at all),
"named_tool_choice" (forcing one named tool; Cohere cannot), "structured_output" (a
``response_format``), "images" (image parts in the conversation) and "embeddings" (an
embeddings endpoint: ``manager.embed``)."""

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]
"""A provider's stop reason, normalised; the raw value is kept beside it."""


class ProviderType(str, enum.Enum):
    """The wire formats flyllm speaks. The value is the name used in logs, usage and configs."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    MISTRAL = "mistral"
    OPENAI_COMPATIBLE = "openai_compatible"
    AZURE = "azure"
    OLLAMA = "ollama"
    COHERE = "cohere"
    GROQ = "groq"
    TOGETHER = "together"
    PERPLEXITY = "perplexity"
    DEEPSEEK = "deepseek"
    OPENROUTER = "openrouter"
    FIREWORKS = "fireworks"
    LMSTUDIO = "lmstudio"
    VLLM = "vllm"

    def __str__(self) -> str:
        return self.value


class ErrorKind(str, enum.Enum):
    """Why an attempt or a request failed; the manager decides retry or failover from this alone."""

    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"
    OVERLOADED = "overloaded"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    MALFORMED_RESPONSE = "malformed_response"
    STREAM_INTERRUPTED = "stream_interrupted"
    UNSUPPORTED = "unsupported"
    STRUCTURED_OUTPUT = "structured_output"
    INVALID_REQUEST = "invalid_request"
    NO_INSTANCE = "no_instance"

    def __str__(self) -> str:
        return self.value


_T = TypeVar("_T")


class _Factory:
    """The default shown for a field with a default_factory, as dataclasses shows it."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY: Any = _Factory()


def _quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen slots dataclass an ``__init__`` that stores each field through its slot.

    The generated one calls ``object.__setattr__`` per field, about twice the cost, and these
    values are built on every request (the caller's request, its conversation, the answer and
    its usage). Same signature, defaults and default factories; instances stay frozen
    (assigning still raises FrozenInstanceError). Only for classes without ``__post_init__``
    or ``init=False`` fields."""
    if hasattr(cls, "__post_init__") or not all(f.init for f in fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__}: _quick_init takes no __post_init__ or init=False field")
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields(cls)):  # type: ignore[arg-type]
        namespace[f"_set{i}"] = cls.__dict__[f.name].__set__
        value = param = f.name
        if f.default is not MISSING:
            namespace[f"_default{i}"] = f.default
            param = f"{f.name}=_default{i}"
        elif f.default_factory is not MISSING:
            namespace[f"_factory{i}"] = f.default_factory
            param = f"{f.name}=_FACTORY"
            value = f"_factory{i}() if {f.name} is _FACTORY else {f.name}"
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    _set{i}(self, {value})")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + "\n".join(body)
    exec(source, namespace)  # as dataclasses itself builds __init__
    init, generated = namespace["__init__"], cls.__init__
    for name in ("__module__", "__qualname__", "__doc__", "__annotations__"):
        setattr(init, name, getattr(generated, name))
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


@dataclass(slots=True, frozen=True)
class Tool:
    """A function the model may call: its ``name`` (letters, digits, "_" and "-", at most 64,
    the first a letter or "_"), a ``description`` the model reads, and its ``parameters`` as a
    JSON Schema of an object.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None) -> Tool:
        """The tool for a plain or async function (or a method): its name (or ``name``), the
        docstring's first paragraph as description, and a JSON Schema of its parameters from
        the type hints (see ``flyllm._schema.function_schema`` for the types understood).
        Raises TypeError naming the parameter when one cannot be described (``*args``, no
        annotation, a type such as ``set`` or ``datetime``)."""
        from flyllm._schema import function_schema

        fn_name, description, parameters = function_schema(fn)
        return cls(name or fn_name, description, parameters)


@dataclass(slots=True, frozen=True)
class ToolCall:
    """One call of a tool that the model asked for.

    ``id`` is unique within the conversation (flyllm makes one up when the provider sends
    none, and rewrites it per target provider when the conversation is sent on); ``arguments``
    are the decoded JSON object. When the model's arguments are not a JSON object (a truncated
    answer, plain text) ``arguments`` is empty and ``raw_arguments`` keeps the text as sent.
    ``provider_data`` holds state a provider requires echoed back with the call (Gemini's
    thought signature), keyed by provider family; it is only ever sent back to that family.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    raw_arguments: str | None = field(default=None, kw_only=True)
    provider_data: Mapping[str, Mapping[str, Any]] = field(
        default=NO_DATA, kw_only=True, repr=False, compare=False
    )


@dataclass(slots=True, frozen=True)
class ToolCallDelta:
    """A streamed piece of a tool call. ``index`` counts the answer's tool calls from 0 (not
    the provider's own block index). The first delta of a call carries its ``id`` and
    ``name``; later ones only ``arguments_delta``, a piece of the arguments' JSON text.
    Providers that send whole calls give one delta per call with all of it."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments_delta: str = ""


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"BM", "image/bmp"),
)
_HEIF_BRANDS = {b"heic": "image/heic", b"heix": "image/heic", b"hevc": "image/heic",
                b"heim": "image/heic", b"heis": "image/heic", b"mif1": "image/heif",
                b"msf1": "image/heif", b"avif": "image/avif"}  # fmt: skip


def sniff_media_type(data: bytes) -> str | None:
    """The image type the bytes' magic numbers say (PNG, JPEG, GIF, WEBP, BMP, HEIC, HEIF,
    AVIF), or None when they match none of them."""
    for offset, magic, media_type in _MAGIC:
        riff = media_type != "image/webp" or data[:4] == b"RIFF"
        if riff and data[offset : offset + len(magic)] == magic:
            return media_type
    if data[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(data[8:12])
    return None


@dataclass(slots=True, frozen=True)
class Image:
    """An image in a user turn: its bytes (``data``, with the ``media_type`` read from them)
    or a ``url`` the provider fetches (flyllm downloads it for providers that take only bytes).
    ``detail`` ("low", "high", "auto" or "original") is a resolution hint for OpenAI, Mistral
    and Cohere ("original" is OpenAI's alone, sent as "high" to the others), left out elsewhere.
    Build one with ``Image.from_path``, ``Image.from_bytes`` or ``Image.from_url``.
    """

    data: bytes | None = field(default=None, repr=False)
    url: str | None = None
    media_type: str | None = None
    detail: str | None = None

    def __repr__(self) -> str:
        # masked: a URL's user-info or a signed query is a credential
        where = f"url={mask_url(self.url)[:80]!r}" if self.url else f"{len(self.data or b'')} bytes"
        return f"Image({where}, media_type={self.media_type!r})"

    @classmethod
    def from_bytes(
        cls, data: bytes, media_type: str | None = None, *, detail: str | None = None
    ) -> Image:
        """An image from its bytes. The media type is read from the bytes' magic numbers; a
        ``media_type`` that contradicts them, or bytes that are no image flyllm knows (PNG,
        JPEG, GIF, WEBP, BMP, HEIC, HEIF, AVIF) with no ``media_type`` given, is a ValueError."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"image data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        sniffed = sniff_media_type(data)
        if sniffed is None and media_type is None:
            raise ValueError(
                "these bytes are not an image flyllm recognises (PNG, JPEG, GIF, WEBP, BMP, "
                "HEIC, HEIF, AVIF); pass media_type= if the provider takes it"
            )
        if sniffed is not None and media_type is not None and media_type.lower() != sniffed:
            raise ValueError(f"media_type {media_type!r} but the bytes are {sniffed}")
        return cls(data, None, sniffed or media_type, detail)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, detail: str | None = None) -> Image:
        """An image read from a file; its media type comes from the bytes, not the name."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), detail=detail)

    @classmethod
    def from_url(
        cls, url: str, *, media_type: str | None = None, detail: str | None = None
    ) -> Image:
        """An image at an http(s) URL (or a ``gs://`` / Gemini File API URI, or a ``data:``
        URI, which is decoded into bytes here)."""
        if not isinstance(url, str) or not url:
            raise TypeError("an image URL must be a non-empty string")
        if url.startswith("data:"):
            head, sep, payload = url.partition(",")
            if not sep or not head.endswith(";base64"):
                raise ValueError("a data: URI image must be base64 (data:<type>;base64,...)")
            try:
                data = base64.b64decode(payload, validate=True)
            except ValueError:
                raise ValueError("the data: URI's base64 payload does not decode") from None
            return cls.from_bytes(data, head[5:-7] or None, detail=detail)
        return cls(None, url, media_type, detail)


@dataclass(slots=True, frozen=True)
class JsonSchema:
    """A ``response_format`` asking for JSON that follows ``schema``: ``name`` (letters,
    digits, "_" and "-", at most 64) names it for the providers that want a name; ``strict``
    asks the provider to enforce the schema while generating where it can (OpenAI's strict
    mode, which needs every object closed and every property required: flyllm rewrites the
    schema when it can, or says why it cannot). flyllm validates every answer either way."""

    name: str
    schema: Mapping[str, Any]
    strict: bool = True
    description: str | None = field(default=None, kw_only=True)


ResponseFormat = Any
"""What ``GenerationRequest.response_format`` takes: a JsonSchema, "json" (any JSON object) or
a pydantic model class (its schema is derived, and ``response.parsed`` is an instance)."""


@_quick_init
@dataclass(slots=True, frozen=True)
class Message:
    """One turn of a conversation: ``role`` is "system", "user", "assistant" or "tool".

    An assistant turn may carry the ``tool_calls`` the model made (its ``content`` then often
    empty); a "tool" turn is the result of one call: ``tool_call_id`` names the call,
    ``content`` is the result's text and ``is_error`` says the call failed. ``tool_name``
    is the called tool's name (some providers need it; flyllm finds it in the conversation
    when absent). ``provider_data`` keeps provider state of an assistant turn (such as
    signed reasoning blocks) that only the same provider family is sent back.
    A user turn with images keeps its ordered text and image ``parts`` (``content`` is then
    their text, joined by newlines, for what reads text only). Build turns with
    ``Message.user(...)`` (text, or a list of text and Image parts), ``Message.assistant(...)``,
    ``Message.system(...)`` and ``Message.tool_result(...)``.
    """

    role: Role
    content: str = ""
    parts: tuple[str | Image, ...] = field(default=(), kw_only=True)
    tool_calls: tuple[ToolCall, ...] = field(default=(), kw_only=True)
    tool_call_id: str | None = field(default=None, kw_only=True)
    tool_name: str | None = field(default=None, kw_only=True)
    is_error: bool = field(default=False, kw_only=True)
    provider_data: Mapping[str, Mapping[str, Any]] = field(
        default=NO_DATA, kw_only=True, repr=False, compare=False
    )

    @classmethod
    def user(cls, content: str | Sequence[str | Image]) -> Message:
        """A user turn: text, or a list of text and Image parts in the order the model
        should read them."""
        if isinstance(content, str):
            return cls("user", content)
        parts = tuple(content)
        text = "\n".join(p for p in parts if isinstance(p, str))
        return cls("user", text, parts=parts)

    @property
    def images(self) -> tuple[Image, ...]:
        """The turn's Image parts, in order."""
        return tuple(p for p in self.parts if isinstance(p, Image))

    @classmethod
    def system(cls, content: str) -> Message:
        """A system turn (each provider gets it where it wants system prompts)."""
        return cls("system", content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        """An assistant turn: its text and the tool calls it made."""
        return cls("assistant", content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool_result(
        cls, call_id: str, content: Any, *, is_error: bool = False, name: str | None = None
    ) -> Message:
        """The result of the tool call ``call_id``: ``content`` is text, or any JSON-able
        value (serialised once, here). ``is_error`` tells the model the call failed."""
        if not isinstance(content, str):
            try:
                content = json.dumps(content, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise TypeError(f"a tool result must be text or JSON-able: {exc}") from None
        return cls("tool", content, tool_call_id=call_id, tool_name=name, is_error=is_error)


@dataclass(slots=True, frozen=True)
class TaskDefinition:
    """A named kind of work (e.g. "summary") with default parameters for every request of it.

    ``provider_params`` maps a provider name ("anthropic", "google", ...) to options sent only to
    instances of that provider, after the general ``parameters``. ``fallback`` names tasks to
    use, in order, when every instance of this one has failed or is cooling down, or the prompt
    is too long for them (a bigger-context group); content-filter refusals fall back only with
    ``fallback_on_content_filter``.
    """

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    provider_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fallback: Sequence[str] = field(default=(), kw_only=True)
    fallback_on_content_filter: bool = field(default=False, kw_only=True)
    mixed_models: bool = field(default=False, kw_only=True)
    """For embeddings: let the task's instances name different models or ``dimensions``
    (their vectors are then not comparable; without it such a task is a ConfigurationError)."""


@_quick_init
@dataclass(slots=True, frozen=True)
class GenerationRequest:
    """One generation: a ``prompt`` or a conversation of ``messages``, optionally for a ``task``.

    ``params`` override the task's and the instance's defaults; ``system`` is a system prompt put
    where each provider wants it; ``max_attempts`` overrides the manager's bound for this request.
    ``deadline`` (seconds) bounds the whole request across attempts and waits;
    ``connect_timeout`` and ``read_timeout`` override the instance's and manager's per attempt.
    ``tools`` are offered to the model; ``tool_choice`` ("auto" when tools are given, "none",
    "required" or a tool's name) and ``parallel_tool_calls`` (None: the provider's default)
    steer how it calls them. Only instances that can take tools are chosen.
    ``response_format`` asks for JSON: a JsonSchema, "json" (any JSON object) or a pydantic
    model class; the answer is validated and decoded into ``LlmResponse.parsed``.
    """

    prompt: str | None = None
    task: str | None = None
    params: Mapping[str, Any] | None = None
    messages: Sequence[Message] | None = field(default=None, kw_only=True)
    system: str | None = field(default=None, kw_only=True)
    max_attempts: int | None = field(default=None, kw_only=True)
    provider_params: Mapping[str, Mapping[str, Any]] | None = field(default=None, kw_only=True)
    deadline: float | None = field(default=None, kw_only=True)
    connect_timeout: float | None = field(default=None, kw_only=True)
    read_timeout: float | None = field(default=None, kw_only=True)
    tools: Sequence[Tool] | None = field(default=None, kw_only=True)
    tool_choice: ToolChoice | None = field(default=None, kw_only=True)
    parallel_tool_calls: bool | None = field(default=None, kw_only=True)
    response_format: ResponseFormat | None = field(default=None, kw_only=True)


@_quick_init
@dataclass(slots=True, frozen=True)
class Usage:
    """Tokens as the provider reported them.

    ``prompt_tokens`` includes everything billed as input (Anthropic's cache creation and cache
    reads too, which are also kept apart in ``cached_tokens``); ``completion_tokens`` includes
    reasoning or thought tokens, as they are billed.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@_quick_init
@dataclass(slots=True, frozen=True)
class LlmResponse:
    """The answer to one request, successful or not (batch methods never raise for one request).

    ``provider`` is the ProviderType's value ("openai", ...); ``model`` is the instance's
    model, the routing identity (usage tables and batch outputs show it), and
    ``served_model`` the model the provider's answer named, when it named one (a dated
    snapshot such as "gpt-4o-mini-2024-07-18"; at most 200 characters). ``finish_reason`` is
    normalised (stop, length, content_filter, tool_calls, other) and ``raw_finish_reason`` keeps the
    provider's own; ``latency`` is in seconds; ``attempts`` counts the attempts made.
    On failure ``error`` is readable text, ``error_kind`` the ErrorKind's value and
    ``exception`` the typed error itself. ``tool_calls`` are the calls the model asked for
    (``finish_reason`` "tool_calls"), in its order; ``message`` is the answer as an assistant
    turn; ``messages`` the whole transcript of a ``run_tools`` loop (empty otherwise).
    ``parsed`` is the decoded, validated JSON of a request with a ``response_format`` (an
    instance of the pydantic class when one was given), None otherwise.
    """

    content: str
    success: bool
    provider: str | None = None
    model: str | None = None
    instance_id: int | None = None
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    latency: float = 0.0
    attempts: int = 0
    error: str | None = None
    error_kind: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    served_model: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    messages: tuple[Message, ...] = field(default=(), repr=False)
    provider_data: Mapping[str, Mapping[str, Any]] = field(
        default=NO_DATA, repr=False, compare=False
    )
    parsed: Any = field(default=None, compare=False)

    @property
    def message(self) -> Message:
        """The answer as an assistant turn (text and tool calls), ready to append to the
        conversation and send to any instance."""
        return Message(
            "assistant",
            self.content,
            tool_calls=self.tool_calls,
            provider_data=self.provider_data,
        )


@_quick_init
@dataclass(slots=True, frozen=True)
class StreamChunk:
    """One piece of a streamed answer: ``text`` is the delta, ``tool_calls`` the tool-call
    pieces it carries (see ToolCallDelta); the last chunk has ``finish_reason`` and ``usage``."""

    text: str
    instance_id: int
    provider: str
    model: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(slots=True, frozen=True)
class EmbeddingRequest:
    """Texts to embed, optionally for a ``task``: ``inputs`` (one text or a list of them),
    ``dimensions`` (a shorter vector, for the models that take it) and ``input_type``
    ("document" or "query", for the providers with that notion; the others ignore it)."""

    inputs: Sequence[str] | str
    task: str | None = None
    dimensions: int | None = None
    input_type: str | None = None


@dataclass(slots=True, frozen=True)
class EmbeddingResult:
    """Vectors for a request's inputs, in input order: each an ``array.array("f")`` of
    float32 (what the providers compute; ``numpy.frombuffer(v, numpy.float32)`` reads one
    without a copy). ``usage`` counts the input tokens; ``instance_id``, ``provider`` and
    ``model`` name the instance that answered (the last one when the inputs took several
    requests). A batch item that failed has ``success=False``, ``error``, ``error_kind`` and
    ``exception``, as LlmResponse."""

    vectors: Sequence[Sequence[float]]
    success: bool = True
    usage: Usage = field(default_factory=Usage)
    instance_id: int | None = None
    provider: str | None = None
    model: str | None = None
    latency: float = 0.0
    attempts: int = 0
    error: str | None = None
    error_kind: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def vector(self) -> Sequence[float]:
        """The one vector of a single-input result (``embed_batch`` gives one per text)."""
        if len(self.vectors) != 1:
            raise ValueError(f"this result has {len(self.vectors)} vectors, not one")
        return self.vectors[0]
