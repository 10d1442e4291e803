"""OpenAI-compatible services (Groq, Together, Perplexity, DeepSeek, OpenRouter, Fireworks,
LM Studio, vLLM), docs/WIRE-more.md section 4: OpenAI's format with each service's own path,
stream-usage placement, ``[DONE]`` habit, key rules and quota answer, from a table.

The table is the emulator's own reading of the services' documentation; it does not import
the client's presets, so a mistake in one shows up as a failing test instead of hiding.
Validation is looser than OpenAI's (these servers ignore fields they do not know) except for
the fields a service documents as rejected. ``GET {prefix}/models`` lists models in OpenAI's
shape plus each service's own fields (a bare array for Together; docs/WIRE-models.md section 1).

Tools and tool turns are read with OpenAI's rules (:mod:`~flyllm.emulator.dialects.chat_tools`)
and streamed in OpenAI's fragments; perplexity has no tool calling (its tool fields are
rejected), and a "notools" model answers as vLLM does without ``--enable-auto-tool-choice`` on
vllm and with Ollama-style "does not support tools" elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flyllm.emulator.catalog import CatalogModel, catalog
from flyllm.emulator.dialects.chat_output import (
    OPENAI_LIMITS,
    fill_output,
    read_images,
    read_output,
)
from flyllm.emulator.dialects.chat_tools import call_fragments, read_tool_turns, read_tools
from flyllm.emulator.dialects.openai import ROLES, OpenAIDialect, error, invalid
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply
from flyllm.emulator.wire import (
    Answer,
    Conversation,
    Dialect,
    Route,
    StreamPlan,
    dumps,
    random_base62,
    random_hex,
)

__all__ = ["FLAVOURS", "CompatDialect", "Flavour"]

FINISH = {
    "end": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "refusal": "stop",
    "tool_calls": "tool_calls",
}
USAGE_MODES = ("stream_options", "x_groq", "finish_chunk", "every_chunk", "final_chunk")


@dataclass(frozen=True, slots=True)
class Flavour:
    """One service: ``prefix`` is the path before ``/chat/completions``; ``usage`` where a
    stream carries usage (one of :data:`USAGE_MODES`); ``done`` whether it ends with
    ``data: [DONE]``; ``key_optional`` whether requests without a key are served; ``max_stop``
    the stop-sequence limit; ``rejected`` fields answered with a 400; ``quota_status`` the
    status of a spent balance; ``embeddings`` whether it serves ``{prefix}/embeddings`` (in
    OpenAI's shape)."""

    name: str
    prefix: str
    usage: str
    done: bool = True
    key_optional: bool = False
    max_stop: int | None = None
    rejected: frozenset[str] = frozenset()
    quota_status: int = 429
    embeddings: bool = False


FLAVOURS: dict[str, Flavour] = {
    f.name: f
    for f in (
        Flavour(
            "groq",
            "/openai/v1",
            "x_groq",
            max_stop=4,
            rejected=frozenset({"logprobs", "logit_bias", "top_logprobs"}),
        ),
        Flavour("together", "/v1", "finish_chunk", embeddings=True),
        Flavour(
            "perplexity",
            "",
            "every_chunk",
            done=False,
            rejected=frozenset({"tools", "tool_choice", "parallel_tool_calls"}),
        ),
        Flavour("deepseek", "", "stream_options", max_stop=16, quota_status=402),
        Flavour("openrouter", "/api/v1", "final_chunk", quota_status=402),
        Flavour("fireworks", "/inference/v1", "finish_chunk", embeddings=True),
        Flavour("lmstudio", "/v1", "stream_options", key_optional=True, embeddings=True),
        Flavour("vllm", "/v1", "stream_options", key_optional=True, embeddings=True),
    )
}


class CompatDialect(OpenAIDialect):
    """An OpenAI-compatible service's dialect, described by a :class:`Flavour`."""

    provider = "openai_compatible"
    supports_refusal = False

    def __init__(self, models: frozenset[str] | None, flavour: Flavour) -> None:
        super().__init__(models)
        self.flavour = flavour
        self._route = flavour.prefix + "/chat/completions"

    def base_url(self, root: str) -> str:
        """The root plus the service's prefix (``/openai/v1`` for Groq...)."""
        return root + self.flavour.prefix

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST {prefix}/chat/completions``, ``GET {prefix}/models`` and, for the services
        that have it, ``POST {prefix}/embeddings``."""
        if method == "GET" and path == self.flavour.prefix + "/models":
            return Route(path, listing=True)
        if (
            self.flavour.embeddings
            and method == "POST"
            and path == self.flavour.prefix + "/embeddings"
        ):
            return Route(path, embed=True)
        return Route(self._route) if method == "POST" and path == self._route else None

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """Every model at once, in the service's shape."""
        name = self.flavour.name
        shape = _SHAPES.get(name, _openai_shape)
        entries = [shape(m, name) for m in catalog(name, self.models)]
        if name == "together":  # Together's GET /models answers a bare JSON array
            return Answer(200, dumps(entries))
        return Answer(200, dumps({"object": "list", "data": entries}))

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The Bearer token; '' without one for local servers that need none."""
        key = super().credentials(headers, query)
        if key is None and self.flavour.key_optional and "Authorization" not in headers:
            return ""
        return key

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Model, messages, limits and stop; unknown fields pass, rejected ones do not."""
        for name in sorted(self.flavour.rejected & set(body)):
            return invalid(f"'{name}' is not supported by {self.flavour.name}", name)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return invalid("you must provide a model parameter", "model")
        if not isinstance(messages, list) or not messages:
            return invalid("'messages' must be a non-empty array", "messages")
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                return invalid(f"invalid role {role!r}", f"messages[{i}].role")
        turns = read_tool_turns(messages)
        if isinstance(turns, Answer):
            return turns
        tools = read_tools(body)
        if isinstance(tools, Answer):
            return tools
        images = read_images(messages, OPENAI_LIMITS, invalid)
        if isinstance(images, Answer):
            return images
        output = read_output(body, invalid, need_json_word=False, strict=False)
        if isinstance(output, Answer):
            return output
        limit = _limit(body)
        stop = _stops(body.get("stop"), self.flavour.max_stop)
        if isinstance(limit, Answer):
            return limit
        if isinstance(stop, Answer):
            return stop
        options = body.get("stream_options")
        conv = Conversation.from_texts(
            model,
            turns.texts,
            turns.prompt,
            max_tokens=limit,
            stop=stop,
            stream=body.get("stream") is True,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )
        fill_output(conv, output, images)
        return turns.fill(conv, *tools)

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """vLLM's 400 when started without tool parsing; Ollama-style text elsewhere."""
        if self.flavour.name != "vllm":
            return Dialect.tools_unsupported(self, conv, rid)
        message = (
            '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
        )
        payload = {"object": "error", "message": message, "type": "BadRequestError",
                   "param": None, "code": 400}  # fmt: skip
        return Answer(400, dumps(payload))

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """OpenAI's answers, except a spent balance where the service answers 402."""
        if fault.kind == "quota" and self.flavour.quota_status == 402:
            answer = error(402, "Insufficient Balance", "insufficient_balance", None, "402")
            if fault.status is not None:
                answer.status = fault.status
            return answer
        return super().fault_answer(fault, conv, rid)

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """Role chunk, one chunk per token, the finish chunk, usage where the service puts
        it, and ``[DONE]`` when the service sends one."""
        mode, start = self.flavour.usage, _Chunks(conv)
        head = [start.event({"role": "assistant", "content": ""})]
        content: list[bytes] = []
        for i, piece in enumerate(reply.chunks):
            extra: dict[str, Any] = {}
            if mode == "every_chunk":
                extra["usage"] = start.usage(i + 1)
            elif mode == "finish_chunk":
                extra["usage"] = None
            content.append(start.event({"content": piece}, None, extra))
        content += [start.event({"tool_calls": [item]}) for item in call_fragments(reply.calls)]
        final: dict[str, Any] = {}
        if mode in ("finish_chunk", "every_chunk"):
            final["usage"] = start.usage(reply.tokens)
        elif mode == "x_groq":
            final["x_groq"] = {"id": "req_" + random_hex(26), "usage": start.usage(reply.tokens)}
        tail = [start.event({}, FINISH[reply.finish], final)]
        if mode == "final_chunk" or (mode == "stream_options" and conv.include_usage):
            tail.append(start.raw({"choices": [], "usage": start.usage(reply.tokens)}))
        if self.flavour.done:
            tail.append(b"data: [DONE]\n\n")
        return StreamPlan(head, content, tail)


def _openai_shape(model: CatalogModel, service: str) -> dict[str, Any]:
    """OpenAI's model object; the owner is the organisation in the id, else the service."""
    owner = model.id.split("/")[0] if "/" in model.id else service
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": owner}


def _groq(model: CatalogModel, service: str) -> dict[str, Any]:
    return {
        **_openai_shape(model, service), "active": True, "context_window": model.context_window,
        "public_apps": None, "max_completion_tokens": model.max_output,
    }  # fmt: skip


def _together(model: CatalogModel, service: str) -> dict[str, Any]:
    return {
        **_openai_shape(model, service), "type": "chat" if model.chat else "embedding",
        "display_name": model.display_name, "organization": model.id.split("/")[0],
        "context_length": model.context_window,
    }  # fmt: skip


def _openrouter(model: CatalogModel, service: str) -> dict[str, Any]:
    limits = {"context_length": model.context_window, "max_completion_tokens": model.max_output}
    return {
        "id": model.id, "canonical_slug": model.id, "name": model.display_name,
        "created": model.created, "description": f"Emulated {model.display_name}.",
        "context_length": model.context_window,
        "architecture": {"modality": "text->text", "input_modalities": ["text"],
                         "output_modalities": ["text"], "tokenizer": "Other"},
        "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
        "top_provider": {**limits, "is_moderated": False},
        "per_request_limits": None,
    }  # fmt: skip


def _deepseek(model: CatalogModel, service: str) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "owned_by": "deepseek"}


def _vllm(model: CatalogModel, service: str) -> dict[str, Any]:
    return {
        **_openai_shape(model, service), "owned_by": "vllm", "root": model.id, "parent": None,
        "max_model_len": model.context_window,
    }  # fmt: skip


_SHAPES: dict[str, Callable[[CatalogModel, str], dict[str, Any]]] = {
    "groq": _groq,
    "together": _together,
    "openrouter": _openrouter,
    "deepseek": _deepseek,
    "vllm": _vllm,
}
"""Services whose model objects differ from OpenAI's (the others use :func:`_openai_shape`)."""


class _Chunks:
    """Builds one stream's chunks (same id, created and model on every one)."""

    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        self._base = {
            "id": "chatcmpl-" + random_base62(29),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": conv.model,
        }

    def usage(self, completion: int) -> dict[str, int]:
        prompt = self._conv.prompt_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def raw(self, fields: dict[str, Any]) -> bytes:
        return b"data: " + dumps({**self._base, **fields}) + b"\n\n"

    def event(
        self, delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self.raw({"choices": [choice], **(extra or {})})


def _limit(body: dict[str, Any]) -> int | Answer | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return invalid(f"'{name}' must be a positive integer", name)
        return value
    return None


def _stops(stop: Any, limit: int | None) -> tuple[str, ...] | Answer:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        return invalid("'stop' must be a string or an array of strings", "stop")
    if limit is not None and len(stops) > limit:
        return invalid(f"'stop' accepts at most {limit} sequences, got {len(stops)}", "stop")
    return tuple(stops)
