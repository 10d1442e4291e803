"""The stream parser and response helpers of the chat-completions format, shared by OpenAI,
the OpenAI-compatible presets, Azure and Mistral (re-exported by :mod:`flyllm.providers.openai`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flyllm.errors import ProviderError, StreamInterruptedError
from flyllm.providers._common import (
    block_text,
    count,
    load_event,
    malformed,
    served_model,
    wrong_type,
)
from flyllm.providers.base import NON_SSE_LINE, Completion, SseEvent
from flyllm.types import Usage

__all__ = ["ChatCompletionsStream", "Conclude", "chat_usage", "content_text"]


def content_text(content: Any, provider: str, where: str = "message.content") -> str:
    """Message text: a string, or the ``text`` chunks of a list of content chunks (Mistral's
    reasoning models), ignoring ``thinking`` and other chunks; '' for null (a tool call).
    MalformedResponseError for any other value (``-5``, ``{"a": 1}``, ``[1, 2, 3]``)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return block_text(content, where, provider)
    raise wrong_type(where, content, provider)


def chat_usage(usage: Any) -> Usage:
    """Usage from ``prompt_tokens``/``completion_tokens``/``total_tokens`` (+ cached tokens)."""
    if not isinstance(usage, dict):
        return Usage()
    prompt = count(usage.get("prompt_tokens"))
    completion = count(usage.get("completion_tokens"))
    total = count(usage.get("total_tokens")) or prompt + completion
    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(prompt, completion, total, cached)


Conclude = Callable[[str, str | None, Usage, str | None, str | None, str], Completion]
"""A provider's last step: (text, raw finish, usage, model, request id, refusal) -> Completion,
raising ContentFilterError (or another ProviderError) when the finish says so."""


class ChatCompletionsStream:
    """StreamParser for chat-completion chunks (OpenAI, compatible servers, Mistral).

    Text is ``choices[0].delta.content``; usage comes from whichever chunk carries it (OpenAI: a
    last chunk with ``choices: []``; Mistral, Together, Fireworks: the finish chunk; Groq:
    ``x_groq.usage`` on the last chunk; Perplexity: every chunk, cumulative), the last one
    winning; ``data: [DONE]`` ends the stream; a chunk with a top-level ``error`` raises the
    classified error. With ``require_done=False`` (servers that never send ``[DONE]``, such as
    Perplexity) a chunk with a finish_reason completes the stream too.
    """

    __slots__ = (
        "_conclude",
        "_done",
        "_error_from",
        "_finish",
        "_model",
        "_name",
        "_parts",
        "_refusal",
        "_require_done",
        "_usage",
    )

    def __init__(
        self,
        name: str,
        conclude: Conclude,
        error_from: Callable[[Any], ProviderError],
        *,
        require_done: bool = True,
    ) -> None:
        self._name = name
        self._conclude = conclude
        self._error_from = error_from
        self._require_done = require_done
        self._done = False
        self._parts: list[str] = []
        self._refusal: list[str] = []
        self._finish: str | None = None
        self._usage = Usage()
        self._model: str | None = None

    @property
    def done(self) -> bool:
        """True once ``data: [DONE]`` has been seen (or, without ``require_done``, a finish
        reason)."""
        return self._done or (not self._require_done and bool(self._finish))

    def feed(self, event: SseEvent) -> str:
        """The text this chunk adds; raises the classified error for an error chunk."""
        data = event.data
        if self._done or event.event == NON_SSE_LINE:
            return ""
        if data.startswith("[DONE]"):
            self._done = True
            return ""
        chunk = load_event(data, self._name)
        if not isinstance(chunk, dict):
            raise malformed("a stream event that is not an object", self._name)
        if chunk.get("error") is not None:
            raise self._failed(chunk["error"])
        if chunk.get("object") == "error":  # Mistral's (and vLLM's) error shape
            raise self._failed(chunk)
        self._meta(chunk)
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise wrong_type("choices", choices, self._name)
        if not choices:  # none, or [] (a usage-only or prompt-filter chunk)
            return ""
        choice = choices[0]
        if not isinstance(choice, dict):
            raise wrong_type("choices[0]", choice, self._name)
        index = choice.get("index")
        if index is not None and type(index) is not int:
            raise wrong_type("choices[0].index", index, self._name)
        if index:  # another choice's delta (n > 1): not part of this answer
            return ""
        raw = choice.get("finish_reason")
        if isinstance(raw, str):
            self._finish = raw
        delta = choice.get("delta")
        if delta is None:
            return ""
        if not isinstance(delta, dict):
            raise wrong_type("choices[0].delta", delta, self._name)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refusal.append(refusal)
        content = delta.get("content")
        text = content if type(content) is str else content_text(content, self._name, "delta")
        if text:
            self._parts.append(text)
        return text

    def _meta(self, chunk: dict[str, Any]) -> None:
        """Usage (top level, or Groq's ``x_groq.usage``) and the model name, when present.
        Azure's first chunk has an empty model, so a later one may still name it."""
        usage = chunk.get("usage")
        if not usage:
            extra = chunk.get("x_groq")
            usage = extra.get("usage") if isinstance(extra, dict) else None
        if usage:
            self._usage = chat_usage(usage)
        if not self._model:
            self._model = served_model(chunk.get("model"))

    def _failed(self, error: Any) -> ProviderError:
        err = self._error_from(error)
        err.partial_content = "".join(self._parts)
        return err

    def finish(self) -> Completion:
        """The whole answer; StreamInterruptedError when ``[DONE]`` never came (nor, without
        ``require_done``, a finish reason)."""
        text = "".join(self._parts)
        if not self.done:
            raise StreamInterruptedError(
                f"{self._name} stream ended before data: [DONE] ({len(text)} characters received)",
                status=200,
                provider=self._name,
                partial_content=text,
            )
        refusal = "".join(self._refusal)
        return self._conclude(text, self._finish, self._usage, self._model, None, refusal)
