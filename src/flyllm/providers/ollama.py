"""Ollama's own chat API (``POST {base}/api/chat``, base ``http://localhost:11434``).

Not the OpenAI-compatible ``/v1`` surface Ollama also serves (use ``openai_compatible`` for
that): the native API reports token counts on every answer, streams newline-delimited JSON
(``stream_framing = "ndjson"``) and takes the sampling parameters inside ``options``.

The body always says ``"stream": true|false``: Ollama streams when the field is absent. The
API key is optional (a local server needs none); with one, it goes as ``Authorization: Bearer``
(ollama.com and authenticating proxies).

Parameters (flyllm name -> wire):

=============  ==================================================================
flyllm         ollama
=============  ==================================================================
max_tokens     ``options.num_predict``
temperature    ``options.temperature``, [0, 2]
top_p          ``options.top_p``, [0, 1]
top_k          ``options.top_k``
stop           ``options.stop``, all kept
seed           ``options.seed``
other          top level, unchanged (``keep_alive``, ``format``, ``think``...); a mapping
               given as ``options`` is merged into ours (``{"options": {"num_ctx": 8192}}``)
=============  ==================================================================

Tools (see docs/providers/tools.md): ``tools`` OpenAI-like; no tool choice on the wire
("none" sends no tools, "required" offers them with a note, a named tool is
UnsupportedFeatureError before sending); calls arrive whole in ``message.tool_calls``
(arguments an object, ids only from recent servers: made up when absent); results go back
as ``{role: tool, content, tool_name, tool_call_id}``.

Structured output and images (see docs/providers/structured-output.md, images.md and
``_ollama_output``): ``format: "json"`` or ``format: <JSON Schema>``, with a one-line JSON
instruction when no turn says "JSON"; a user turn's images as ``images: [base64...]`` beside
its text (PNG and JPEG; no URLs: ``image_url_schemes`` is empty, flyllm downloads them).

Answers: text is ``message.content`` (``message.thinking`` is not part of it); finish from
``done_reason``: stop -> stop (tool_calls when the answer has calls), length -> length,
others (load, unload...) -> other; usage:
prompt = ``prompt_eval_count``, completion = ``eval_count`` (0 when absent: Ollama leaves
``prompt_eval_count`` out when the whole prompt came from its cache). Streams: one JSON object
per line, ``message.content`` is the increment, the line with ``done: true`` carries
``done_reason`` and the counts and ends the stream.

Errors are ``{"error": "text"}``: 400 bad request, 401/403 authentication/permission (hosted or
proxied servers), 404 not found ("model 'x' not found"), 429 rate limit (QuotaError when the
text speaks of a usage limit), 500 server, 502 server, 503 overloaded ("server busy ... maximum
pending requests exceeded"); a text about the context length -> ContextLengthError whatever the
status; "... does not support tools" (400) -> UnsupportedFeatureError, "... does not support
image(s)" (400) -> UnsupportedFeatureError(feature="images"). A ``{"error": ...}``
line inside a 200 stream raises the same way (as a server error unless its text says
otherwise). ``retry_after`` from ``retry-after-ms`` / ``retry-after``.

Embeddings (``POST {base}/api/embed``): see :mod:`flyllm.providers.ollama_embed`; a too-long
input ("the input length exceeds the context length") is a ContextLengthError as above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import (
    ContextLengthError,
    OverloadedError,
    ProviderError,
    QuotaError,
    StreamInterruptedError,
    UnsupportedFeatureError,
)
from flyllm.params import OutputFormat
from flyllm.providers._common import (
    ClockedProvider,
    add_extra,
    as_str,
    at_least,
    bearer_auth,
    brief,
    clamp,
    clip,
    count,
    dumps,
    error_class_for_status,
    fallback_message,
    header_retry_after,
    join_url,
    left_out,
    load_event,
    load_object,
    make_error,
    malformed,
    merge_headers,
    parse_error_body,
    redacted_stream,
    served_model,
    stop_sequences,
    without_secrets,
    wrong_type,
)
from flyllm.providers._json_hint import with_json_hint
from flyllm.providers._listing import items_of, name_of, path_url
from flyllm.providers._ollama_output import (
    check_images,
    image_data,
    output_format,
    unsupported_images,
)
from flyllm.providers._tools import (
    ToolCallAssembler,
    function_call,
    function_tools,
    tool_names,
    unsupported_tools_message,
)
from flyllm.providers.base import (
    NON_SSE_LINE,
    Completion,
    Delta,
    EmbeddingLimits,
    Embeddings,
    Endpoint,
    HttpRequest,
    HttpResponse,
    ModelInfo,
    ModelListing,
    Page,
    ProviderSpec,
    SseEvent,
    StreamParser,
    ToolSet,
)
from flyllm.providers.ollama_embed import (
    OLLAMA_EMBEDDING_LIMITS,
    ollama_embed_body,
    parse_ollama_embeddings,
)
from flyllm.types import (
    Capability,
    FinishReason,
    Message,
    ProviderType,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["OLLAMA_BASE_URL", "SPEC", "OllamaProvider", "OllamaStream", "ollama_host"]

OLLAMA_BASE_URL = "http://localhost:11434"
"""Where a local Ollama listens by default; requests go to ``{base}/api/chat``."""

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
_RESERVED = frozenset({"model", "messages", "stream"})
_CONTEXT_WORDS = ("context length", "context window", "exceeds the maximum context")
_OPTIONS = {"top_k": "top_k", "seed": "seed"}


def ollama_usage(data: Mapping[str, Any]) -> Usage:
    """Usage from ``prompt_eval_count`` and ``eval_count``."""
    prompt = count(data.get("prompt_eval_count"))
    completion = count(data.get("eval_count"))
    return Usage(prompt, completion, prompt + completion)


class OllamaProvider(ClockedProvider):
    """Ollama's native chat wire format; stateless, shared by every instance. ``clock`` (epoch
    seconds) dates the HTTP-date form of ``retry-after``."""

    name = "ollama"
    default_base_url = OLLAMA_BASE_URL
    stream_framing = "ndjson"
    capabilities: frozenset[Capability] = frozenset(
        {"tools", "structured_output", "images", "embeddings"}
    )
    """Tools, but no tool choice at all: Ollama's API has none, so a named tool cannot be
    forced (refused before sending) and "required" is sent as plain tools, with a note."""
    image_url_schemes: frozenset[str] = frozenset()
    """Ollama takes images only as base64 bytes: the engine downloads every URL first."""
    embedding_limits: EmbeddingLimits = OLLAMA_EMBEDDING_LIMITS
    """flyllm's own caps: Ollama sets none per request (see ``ollama_embed``)."""

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
        """The POST to ``{base_url}/api/chat`` for this conversation."""
        check_images(messages)
        if output is not None:
            messages = with_json_hint(messages)
        notes: list[str] = []
        names = tool_names(messages) if any(m.role == "tool" for m in messages) else {}
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [_message(m, names) for m in messages],
            "stream": stream,
        }
        if output is not None:
            body["format"] = output_format(output)
        if tools is not None:
            _offer(body, tools, notes)
        options, extras = _translate(params, notes)
        if options:
            body["options"] = options
        for key, value in extras:
            add_extra(body, key, value)
        url = join_url(endpoint.base_url or OLLAMA_BASE_URL, "/api/chat")
        return HttpRequest("POST", url, _headers(endpoint), dumps(body), tuple(notes))

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The Completion in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        data = load_object(response, self.name, None)
        if data.get("error") is not None:
            raise self.stream_error(data["error"])
        message = data.get("message")
        if not isinstance(message, dict):
            raise malformed("no message", self.name, response)
        calls = ToolCallAssembler("ollama")
        _read_calls(message, calls)
        return self.conclude(_text(message), data, calls.calls())

    def build_embed(
        self, endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
    ) -> HttpRequest:
        """The POST to ``{base_url}/api/embed`` for these inputs."""
        notes: list[str] = []
        body = ollama_embed_body(endpoint.model, inputs, params, notes)
        url = join_url(endpoint.base_url or OLLAMA_BASE_URL, "/api/embed")
        return HttpRequest("POST", url, _headers(endpoint), body, tuple(notes))

    def parse_embed(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Embeddings:
        """The Embeddings in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        return parse_ollama_embeddings(response)

    def conclude(
        self, text: str, final: Mapping[str, Any], calls: tuple[ToolCall, ...] = ()
    ) -> Completion:
        """The Completion from the text, the final object (``done_reason``, counts) and the
        calls; Ollama says ``stop`` after calls too, so calls make it ``tool_calls``."""
        raw = as_str(final.get("done_reason"))
        finish: FinishReason = _FINISH.get(raw, "other") if raw else "other"
        if calls and finish in ("stop", "other"):
            finish = "tool_calls"
        model = served_model(final.get("model"))
        return Completion(text, finish, raw, ollama_usage(final), model, None, calls)

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A parser for one streamed (NDJSON) answer."""
        return redacted_stream(OllamaStream(self), endpoint)

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (see the module doc for the table)."""
        response = without_secrets(response, endpoint)
        status, headers = response.status, response.headers
        message = _error_text(parse_error_body(response.body))
        if 400 <= status < 500 and unsupported_tools_message(message or ""):
            return UnsupportedFeatureError(
                clip(f"{message} (this model cannot take tools; pick one that can)"),
                feature="tools",
                status=status,
                provider=self.name,
            )
        if 400 <= status < 500 and unsupported_images(message or ""):
            return UnsupportedFeatureError(
                clip(f"{message} (this model cannot take images; pick a vision model)"),
                feature="images",
                status=status,
                provider=self.name,
            )
        return make_error(
            _error_class(status, message or ""),
            message or fallback_message(status, response.body),
            status=status,
            provider=self.name,
            headers=headers,
            request_id=None,
            retry_after=header_retry_after(headers, self._clock),
        )

    def stream_error(self, error: Any) -> ProviderError:
        """The typed error for an ``{"error": ...}`` object inside a 200 answer."""
        message = error if isinstance(error, str) else _error_text({"error": error})
        return make_error(
            _error_class(500, message or ""),
            message or f"error line: {brief(error)}",
            status=200,
            provider=self.name,
            headers={},
            request_id=None,
            retry_after=None,
        )


def _headers(endpoint: Endpoint) -> dict[str, str]:
    """JSON both ways, the key when there is one, then the instance's own headers."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    headers.update(bearer_auth(endpoint))
    if endpoint.headers:
        merge_headers(headers, endpoint.headers)
    return headers


def _translate(
    params: Mapping[str, Any], notes: list[str]
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The known parameters as Ollama ``options``, and the others for the top level."""
    options: dict[str, Any] = {}
    extras: list[tuple[str, Any]] = []
    for key, value in params.items():
        if value is None:
            continue
        if key == "max_tokens":
            options["num_predict"] = at_least(key, value, 1, "ollama", notes)
        elif key == "temperature":
            options["temperature"] = clamp(key, value, 0.0, 2.0, "ollama", notes)
        elif key == "top_p":
            options["top_p"] = clamp(key, value, 0.0, 1.0, "ollama", notes)
        elif key in _OPTIONS:
            options[_OPTIONS[key]] = value
        elif key == "stop":
            stops = stop_sequences(value, None, "ollama", notes)
            if stops:
                options["stop"] = stops
        elif key in _RESERVED:
            left_out(key, "ollama", notes, "is set by flyllm")
        else:
            extras.append((key, value))
    return options, extras


def _message(message: Message, names: Mapping[str, str]) -> dict[str, Any]:
    """One turn on Ollama's wire: calls with their arguments as an object (a call whose
    arguments were not a JSON object goes with none: the wire cannot carry text there) and
    its id; a result with ``tool_name`` (the turn's own, else the call's in ``names``) and
    ``tool_call_id``. Ollama has no error flag, so a failed call's text says it."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["images"] = image_data(message.images)
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "function": {"name": c.name, "arguments": dict(c.arguments)}}
            for c in message.tool_calls
        ]
    elif message.role == "tool":
        if message.is_error:
            out["content"] = f"Error: {message.content}"
        name = message.tool_name or names.get(message.tool_call_id or "")
        if name:
            out["tool_name"] = name
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
    return out


def _offer(body: dict[str, Any], tools: ToolSet, notes: list[str]) -> None:
    """``tools`` as Ollama takes them (OpenAI-like). Ollama has no tool choice: "none" sends
    no tools, "required" offers them and notes that the model may still answer in text, a
    named tool is refused before sending; there is no parallel switch either."""
    choice = tools.choice
    if choice not in ("auto", "required", "none"):
        raise UnsupportedFeatureError(
            f"ollama cannot force the tool {choice!r} (its API has no tool_choice); "
            "use tool_choice='auto' or another provider",
            feature="named_tool_choice",
            provider="ollama",
        )
    if choice == "none":
        return
    body["tools"] = function_tools(tools.tools)
    if choice == "required":
        left_out(
            "tool_choice='required'", "ollama", notes, "cannot be forced on ollama (tools offered)"
        )
    if tools.parallel is False:
        left_out("parallel_tool_calls=False", "ollama", notes, "has no ollama equivalent")


def _read_calls(message: Any, calls: ToolCallAssembler) -> tuple[ToolCallDelta, ...]:
    """The whole calls in ``message.tool_calls`` (one delta each, ids made up when the
    server sent none); MalformedResponseError for a list, call or arguments of the wrong
    type (arguments are an object; text is read as JSON, as some compatible servers send)."""
    value = message.get("tool_calls") if isinstance(message, dict) else None
    if value is None:
        return ()
    if not isinstance(value, list):
        raise wrong_type("message.tool_calls", value, "ollama")
    deltas = []
    for n, item in enumerate(value):
        call_id, name, arguments = function_call(item, f"message.tool_calls[{n}]", "ollama")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict | str):
            raise wrong_type(f"message.tool_calls[{n}].function.arguments", arguments, "ollama")
        deltas.append(calls.whole(call_id, name, arguments))
    return tuple(deltas)


def _text(message: Any) -> str:
    """``message.content`` of an answer or a stream line: a string ('' when the message or its
    content is absent or null); MalformedResponseError for anything else."""
    if message is None:
        return ""
    if not isinstance(message, dict):
        raise wrong_type("message", message, "ollama")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    raise wrong_type("message.content", content, "ollama")


def _error_text(payload: Any) -> str | None:
    """The text of ``{"error": "..."}`` (or of a nested ``{"error": {"message": ...}}``)."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        return as_str(error.get("message"))
    return as_str(error) or as_str(payload.get("message"))


def _error_class(status: int, message: str) -> type[ProviderError]:
    lowered = message.lower()
    if any(words in lowered for words in _CONTEXT_WORDS):
        return ContextLengthError
    if status == 429 and "usage limit" in lowered:
        return QuotaError
    if status >= 500 and ("server busy" in lowered or "overloaded" in lowered):
        return OverloadedError
    return error_class_for_status(status)


class OllamaStream:
    """StreamParser for Ollama's NDJSON lines (each arrives as one SseEvent's ``data``).

    ``message.content`` of each line is the increment; the ``done: true`` line ends the stream
    with ``done_reason`` and the counts; an ``{"error": ...}`` line raises; lines after the
    end are ignored.
    """

    __slots__ = ("_calls", "_done", "_final", "_parts", "_provider")

    def __init__(self, provider: OllamaProvider) -> None:
        self._provider = provider
        self._calls = ToolCallAssembler("ollama")
        self._parts: list[str] = []
        self._final: dict[str, Any] = {}
        self._done = False

    @property
    def done(self) -> bool:
        """True once the ``done: true`` line has been seen."""
        return self._done

    def feed(self, event: SseEvent) -> str | Delta:
        """The text this line adds (a Delta when it carries whole tool calls, one piece per
        call); raises the classified error for an error line."""
        if self._done or event.event == NON_SSE_LINE:
            return ""
        line = load_event(event.data, "ollama")
        if not isinstance(line, dict):
            raise malformed("a stream line that is not an object", "ollama")
        if line.get("error") is not None:
            err = self._provider.stream_error(line["error"])
            err.partial_content = "".join(self._parts)
            raise err
        text = _text(line.get("message"))
        if text:
            self._parts.append(text)
        pieces = _read_calls(line.get("message"), self._calls)
        if line.get("done") is True:
            self._done = True
            self._final = line
        return Delta(text, pieces) if pieces else text

    def finish(self) -> Completion:
        """The whole answer; StreamInterruptedError when the ``done: true`` line never came."""
        text = "".join(self._parts)
        if not self._done:
            raise StreamInterruptedError(
                f"ollama stream ended before its done line ({len(text)} characters received)",
                status=200,
                provider="ollama",
                partial_content=text,
            )
        return self._provider.conclude(text, self._final, self._calls.calls())


def ollama_host(value: str) -> str:
    """The base URL of an ``OLLAMA_HOST`` value: "host", "host:port" or a URL (the port
    11434 and the scheme http when it names none)."""
    value = value.strip()
    if "://" not in value:
        value = "http://" + value
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if ":" not in host.rsplit("]", 1)[-1]:
        value = f"{scheme}://{host}:11434" + rest[len(host) :]
    return value


def _models_page(data: Any, provider: str) -> Page:
    """``{"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}``;
    ``model`` is the name ``/api/chat`` takes (e.g. ``llama3.2:latest``)."""
    models = [
        ModelInfo(name_of(item, ("model", "name"), provider), provider, raw=item)
        for item in items_of(data, "models", provider, required=False)
    ]
    return models, None


SPEC = ProviderSpec(
    ProviderType.OLLAMA,
    OllamaProvider(),
    bearer_auth,
    ModelListing(path_url("/api/tags"), _models_page),
    base_url_env="OLLAMA_HOST",
    read_base_url_env=ollama_host,
    key_required=False,
)
"""Ollama's native API: ``GET {base}/api/tags``, one page; the key optional (a local server)."""
