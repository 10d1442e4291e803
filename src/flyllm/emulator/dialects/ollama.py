"""Ollama's native chat API (``POST /api/chat``), docs/WIRE-more.md section 2.

Newline-delimited JSON streams (``application/x-ndjson``), streaming by default when the body
has no ``stream`` field, sampling parameters inside ``options``, errors as
``{"error": "text"}``. ``format`` is "json" or a JSON Schema object; a message's ``images``
are base64 strings (no data: prefix) of PNG or JPEG images. No key is needed; with
``api_keys`` set the emulator wants a Bearer token, as ollama.com or an authenticating
proxy would. ``GET /api/tags`` lists the local models (docs/WIRE-models.md section 6).

``POST /api/embed`` (the SDK's ``embed``): ``input`` a text or a list of texts (none: an empty
list back), ``truncate`` (default true: an input over the context, ``input_limit`` words or
8192, is cut to it; false: 400 "the input length exceeds the context length"),
``dimensions`` (the head of the vector, normalised again; 0 or more than the model's size:
the full vector; negative: 400), usage as ``prompt_eval_count`` (words embedded). Vectors
from :mod:`flyllm.emulator.embeddings`, unit length as Ollama's are, 768 values
(nomic-embed-text; 1024 for mxbai-embed-large, 384 for all-minilm).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flyllm.emulator.catalog import CatalogModel, catalog
from flyllm.emulator.dialects._cohere_output import media_type
from flyllm.emulator.embeddings import vector
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply, count_words
from flyllm.emulator.tools import OfferedTool, ToolResult
from flyllm.emulator.wire import (
    Answer,
    Conversation,
    Dialect,
    Route,
    StreamPlan,
    bearer_token,
    dumps,
    random_hex,
    retry_after_headers,
)

__all__ = ["OllamaDialect"]

ROUTE = "/api/chat"
TAGS_ROUTE = "/api/tags"
EMBED_ROUTE = "/api/embed"
EMBED_CONTEXT = 8192
"""nomic-embed-text's context: the words one input may have when the emulator sets none."""
TOO_LONG = "the input length exceeds the context length"
_EMBED_SIZES = {"mxbai-embed-large": 1024, "all-minilm": 384}
CONTEXT_WINDOW = 4096
ROLES = ("system", "user", "assistant", "tool")
DONE_REASON = {"end": "stop", "stop_sequence": "stop", "length": "length", "refusal": "stop",
               "tool_calls": "stop"}  # fmt: skip
_UNMARSHAL = "json: cannot unmarshal {} into Go struct field {} of type {}"
NDJSON = "application/x-ndjson"
STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
_FAULTS = {
    "server_error": (500, "llama runner process has terminated: exit status 2"),
    "stream_error": (500, "llama runner process has terminated: exit status 2"),
    "bad_gateway": (502, "an error was encountered while running the model: unexpected EOF"),
    "unavailable": (503, BUSY),
    "overloaded": (503, BUSY),
    "unauthorized": (401, "unauthorized"),
    "quota": (429, "you've reached your session usage limit, please wait or upgrade to continue"),
}
IMAGE_TYPES = frozenset({"image/png", "image/jpeg"})
"""What the server's image decoders take (Go's image/png and image/jpeg)."""
UNKNOWN_FORMAT = "Failed to create new sequence: failed to process inputs: image: unknown format"
# Nanosecond timings are not meaningful here; plausible fixed values keep bodies realistic.
_LOAD_NS, _PER_TOKEN_NS = 18_375_208, 24_000_000


def error(status: int, message: str) -> Answer:
    """An answer with Ollama's error body ``{"error": "..."}``."""
    return Answer(status, dumps({"error": message}))


def _created_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_messages(messages: Any) -> tuple[list[str], str, str, tuple[ToolResult, ...]] | Answer:
    """Every message's text, the last user text, the last role and the trailing tool results
    (named by ``tool_name``, else by the call ``tool_call_id`` names), or the 400 Ollama
    gives. Ollama checks no pairing of calls and results: its template just renders them."""
    if not isinstance(messages, list):
        return error(400, "json: cannot unmarshal string into Go struct field ChatRequest.messages")
    texts: list[str] = []
    prompt, role = "", "user"
    names: dict[str, str] = {}
    results: list[ToolResult] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
            return error(400, "json: cannot unmarshal object into Go struct field Message.content")
        if message.get("role") not in ROLES:
            return error(400, f"invalid role: {message.get('role')!r}")
        problem = _read_calls(message.get("tool_calls"), names)
        if problem:
            return problem
        role, text = message["role"], message.get("content") or ""
        texts.append(text)
        if role == "tool":
            name = message.get("tool_name") or names.get(str(message.get("tool_call_id")), "tool")
            results.append(ToolResult(str(name), text))
        else:
            results = []
        if role == "user":
            prompt = text
    return texts, prompt, role, tuple(results)


def _read_calls(calls: Any, names: dict[str, str]) -> Answer | None:
    """Record a message's calls (id -> name); Go's 400 for a call of the wrong shape (its
    arguments must be an object)."""
    if calls is None:
        return None
    if not isinstance(calls, list):
        return error(400, _UNMARSHAL.format("object", "Message.tool_calls", "[]api.ToolCall"))
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name", ""), str):
            return error(
                400, _UNMARSHAL.format("string", "ToolCall.function", "api.ToolCallFunction")
            )
        if not isinstance(function.get("arguments", {}), dict):
            field = "ToolCallFunction.arguments"
            return error(400, _UNMARSHAL.format("string", field, "api.ToolCallFunctionArguments"))
        if isinstance(call.get("id"), str):
            names[call["id"]] = function.get("name", "")
    return None


def _read_format(value: Any) -> tuple[bool, dict[str, Any] | None] | Answer:
    """(JSON asked for, the schema) from ``format``: absent, "" or null (none), "json", or a
    JSON Schema object; anything else is the server's error (from its completion step, so a
    500). A ``$ref`` outside the schema cannot be compiled into a grammar."""
    if value is None or value == "":
        return False, None
    if value == "json":
        return True, None
    if not isinstance(value, dict):
        text = json.dumps(json.dumps(value))
        return error(500, f'invalid format: {text}; expected "json" or a valid JSON Schema object')
    if '"$ref": "http' in json.dumps(value) or '"$ref": "file' in json.dumps(value):
        return error(500, "invalid JSON schema in format")
    return True, value


def _read_images(messages: list[Any]) -> tuple[str, ...] | Answer:
    """The media types of every message's ``images`` (base64 strings), or the server's
    error: Go's base64 decoder (400) or the runner's image decoder (500)."""
    found: list[str] = []
    for message in messages:
        images = message.get("images") if isinstance(message, dict) else None
        if images is None:
            continue
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            return error(400, _UNMARSHAL.format("object", "Message.images", "[]api.ImageData"))
        for text in images:
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                bad = next((n for n, c in enumerate(text) if not (c.isalnum() or c in "+/=")), 0)
                return error(400, f"illegal base64 data at input byte {bad}")
            kind = media_type(data)
            if kind not in IMAGE_TYPES:
                return error(500, UNKNOWN_FORMAT)
            found.append(kind)
    return tuple(found)


def _read_tools(tools: Any) -> tuple[OfferedTool, ...] | Answer:
    """The offered tools (``[{type: function, function: {name, parameters}}]``), or Go's 400."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        return error(400, _UNMARSHAL.format("object", "ChatRequest.tools", "api.Tools"))
    offered = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return error(400, _UNMARSHAL.format("string", "Tool.function", "api.ToolFunction"))
        schema = function.get("parameters")
        offered.append(OfferedTool(function["name"], schema if isinstance(schema, dict) else {}))
    return tuple(offered)


def _read_options(options: Any) -> tuple[int | None, tuple[str, ...]] | Answer:
    """(num_predict when positive, stop sequences) from ``options``, or a 400."""
    if options is None:
        return None, ()
    if not isinstance(options, dict):
        return error(400, "json: cannot unmarshal string into Go struct field .options")
    limit = options.get("num_predict")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        return error(400, "invalid option provided: num_predict must be an integer")
    stop = options.get("stop", [])
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        return error(400, "invalid option provided: stop must be a list of strings")
    return (limit if limit is not None and limit > 0 else None), tuple(stop)


def _embed_request(body: dict[str, Any]) -> tuple[list[str], bool, int] | Answer:
    """(texts, truncate, dimensions or 0) as the server decodes them, or its 400."""
    raw = body.get("input")
    texts = [] if raw is None or raw == "" else [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return error(400, "invalid input type")
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        return error(400, _UNMARSHAL.format("string", "EmbedRequest.truncate", "bool"))
    dims = body.get("dimensions") or 0
    if not isinstance(dims, int) or isinstance(dims, bool):
        return error(400, _UNMARSHAL.format("string", "EmbedRequest.dimensions", "int"))
    if dims < 0:
        return error(400, "dimensions must be a positive integer")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        return error(400, "json: cannot unmarshal string into Go struct field .options")
    return texts, truncate, dims


def _tag(model: CatalogModel) -> dict[str, Any]:
    """One local model as ``/api/tags`` lists it (``display_name`` holds its family)."""
    family = model.display_name if model.display_name != model.id else model.id.split(":")[0]
    digest = hashlib.sha256(model.id.encode()).hexdigest()
    modified = datetime.fromtimestamp(model.created, timezone.utc)
    return {
        "name": model.id,
        "model": model.id,
        "modified_at": modified.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
        "size": 2_019_393_189 + int(digest[:6], 16),
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "3.2B" if model.chat else "137M",
            "quantization_level": "Q4_K_M" if model.chat else "F16",
        },
    }


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    """The calls as Ollama sends them: whole, arguments an object, ``index`` in the function,
    and no id (servers before 0.12 send none; clients must cope)."""
    return [
        {"function": {"index": n, "name": call.name, "arguments": dict(call.arguments)}}
        for n, call in enumerate(reply.calls)
    ]


class OllamaDialect(Dialect):
    """Ollama's dialect: keyless by default, NDJSON streams, counts on the final object."""

    provider = "ollama"
    supports_refusal = False

    def base_url(self, root: str) -> str:
        """``http://host:port``, what ``ollama.AsyncClient(host=...)`` takes."""
        return root

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST /api/chat``, ``POST /api/embed`` and ``GET /api/tags``."""
        if method == "GET" and path == TAGS_ROUTE:
            return Route(TAGS_ROUTE, sse=False, listing=True)
        if method == "POST" and path == EMBED_ROUTE:
            return Route(EMBED_ROUTE, sse=False, embed=True)
        return Route(ROUTE, sse=False) if method == "POST" and path == ROUTE else None

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """``{"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}``."""
        return Answer(200, dumps({"models": [_tag(m) for m in catalog("ollama", self.models)]}))

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """``{"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}``,
        or the server's 400 (see the module doc). Unknown fields are ignored, as Go does."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error(400, "model is required")
        if not self.known_model(model):
            return self.unknown_model(model, route, rid)
        request = _embed_request(body)
        if isinstance(request, Answer):
            return request
        texts, truncate, dims = request
        limit, counted, vectors = input_limit or EMBED_CONTEXT, 0, []
        size = _EMBED_SIZES.get(model.split(":")[0], 768)
        for text in texts:
            words = text.split()
            if len(words) > limit:
                if not truncate:
                    return error(400, TOO_LONG)
                text = " ".join(words[:limit])
            counted += count_words(text)
            vectors.append(vector(text, model, dims if 0 < dims < size else size))
        return Answer(200, dumps({"model": model, "embeddings": vectors,
                                  "total_duration": _LOAD_NS + _PER_TOKEN_NS * len(texts),
                                  "load_duration": _LOAD_NS,
                                  "prompt_eval_count": counted}))  # fmt: skip

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The Bearer token, or '' without one (a local server needs no key)."""
        return bearer_token(headers) or ""

    def request_id(self) -> str:
        """Ollama has no request ids; one for the emulator's own log."""
        return random_hex(16)

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """401 ``unauthorized``, as ollama.com answers."""
        return error(401, "unauthorized")

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """Go's plain-text 404."""
        return Answer(404, b"404 page not found", "text/plain")

    def malformed_json(self, rid: str) -> Answer:
        """400 with the JSON decoder's message."""
        return error(400, "invalid character 'x' looking for beginning of value")

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Model, messages and options as the server decodes them; ``stream`` defaults to
        true. Unknown fields are ignored (Go's decoder does)."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error(400, "model is required")
        read = _read_messages(body.get("messages", []))
        if isinstance(read, Answer):
            return read
        texts, prompt, last_role, results = read
        tools = _read_tools(body.get("tools"))
        if isinstance(tools, Answer):
            return tools
        options = _read_options(body.get("options"))
        if isinstance(options, Answer):
            return options
        limit, stop = options
        output = _read_format(body.get("format"))
        if isinstance(output, Answer):
            return output
        images = _read_images(body.get("messages", []))
        if isinstance(images, Answer):
            return images
        if images and "novision" in model.lower():  # the emulator's text-only models
            return error(400, "this model does not support image input")
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            return error(400, "json: cannot unmarshal string into Go struct field .stream")
        conv = Conversation.from_texts(
            model,
            texts,
            prompt,
            max_tokens=limit,
            stop=stop,
            stream=stream,
            sse=False,
        )
        conv.tools, conv.last_role, conv.tool_results = tools, last_role, results
        (conv.output_json, conv.output_schema), conv.images = output, images
        return conv

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """400 ``registry.ollama.ai/library/<model> does not support tools``."""
        model = conv.model if ":" in conv.model else conv.model + ":latest"
        return error(400, f"registry.ollama.ai/library/{model} does not support tools")

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """404 ``model 'x' not found``."""
        return error(404, f"model '{model}' not found")

    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """400 ``the input length exceeds the context length`` (a local server truncates
        instead unless told not to; this is what it says when it cannot)."""
        return error(400, "the input length exceeds the context length")

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """``{"error": ...}`` with the status and wording of each failure."""
        if fault.kind == "rate_limit":
            answer = error(429, "too many requests, please retry later")
            answer.headers = retry_after_headers(fault.retry_after, with_ms=False)
            answer.throttled_for = fault.retry_after or 0.0
        else:
            status, message = _FAULTS.get(fault.kind, _FAULTS["server_error"])
            answer = error(status, message)
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def _final(
        self, conv: Conversation, reply: Reply, content: str, calls: bool = False
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = _tool_calls(reply)
        return {
            "model": conv.model,
            "created_at": _created_at(),
            "message": message,
            "done_reason": DONE_REASON[reply.finish],
            "done": True,
            "total_duration": _LOAD_NS + _PER_TOKEN_NS * (reply.tokens + 1),
            "load_duration": _LOAD_NS,
            "prompt_eval_count": conv.prompt_tokens,
            "prompt_eval_duration": _PER_TOKEN_NS,
            "eval_count": reply.tokens,
            "eval_duration": _PER_TOKEN_NS * reply.tokens,
        }

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The whole answer in one object, counts included (and the calls, whole)."""
        return dumps(self._final(conv, reply, reply.text, bool(reply.calls)))

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """One line per token, then the ``done: true`` line with the counts. Tool calls come
        whole, all in one ``done: false`` line before the final one."""
        model = json.dumps(conv.model)
        if reply.calls:
            line = {"model": conv.model, "created_at": _created_at(),
                    "message": {"role": "assistant", "content": "",
                                "tool_calls": _tool_calls(reply)}, "done": False}  # fmt: skip
            tail = [dumps(self._final(conv, reply, "")) + b"\n"]
            return StreamPlan([], [dumps(line) + b"\n"], tail, NDJSON)
        content = [
            (
                f'{{"model":{model},"created_at":"{_created_at()}","message":{{"role":'
                f'"assistant","content":{json.dumps(piece)}}},"done":false}}\n'
            ).encode()
            for piece in reply.chunks
        ]
        final = dumps(self._final(conv, reply, "")) + b"\n"
        return StreamPlan([], content, [final], NDJSON)

    def stream_error(self, rid: str) -> bytes:
        """An ``{"error": ...}`` line, which the SDK raises as ``ResponseError``."""
        return dumps({"error": STREAM_ERROR}) + b"\n"

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """Ollama sends no request-id or rate-limit headers."""
        del rid, tokens, elapsed_s, throttled_for
        return {}
