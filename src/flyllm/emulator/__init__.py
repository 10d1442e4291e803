"""A loopback emulator of the OpenAI, Anthropic, Gemini and Mistral HTTP APIs, and of Azure
OpenAI, Ollama's native API, Cohere's v2 chat and the OpenAI-compatible services (groq,
together, perplexity, deepseek, openrouter, fireworks, lmstudio, vllm; see
``dialects/compat.py`` and docs/WIRE-more.md).

It stands in for the real providers in tests, the demo and benchmarks, so it follows their
API references (docs/WIRE-more.md, docs/WIRE-models.md) byte for byte where it matters: routes,
auth, validation, error bodies, SSE framing and usage placement, request-id and rate-limit
headers. It is an independent
implementation: nothing here imports the client side of flyllm.

    async with Emulator(provider="anthropic", api_keys={"k1"}) as emu:
        ...  # point a client at emu.base_url; read emu.stats() / emu.requests afterwards

From the shell: ``flyllm emulate --provider openai --port 8001 [--count 4]`` (or
``python -m flyllm.emulator``); other processes drive it through the control API under
``/_emulator/`` (see :mod:`flyllm.emulator.control`). Each dialect also serves its provider's
models endpoint (``GET /v1/models``, ``/api/tags``...; :mod:`flyllm.emulator.catalog` and
docs/WIRE-models.md section 8).

Text and tokens
    A token is a whitespace-separated word. A reply is ``generate_text(prompt, seed,
    reply_tokens)``: a tag ``t`` + 7 hex digits hashed from the last user message (e.g.
    ``t3f9a2c1``) then lowercase words from a fixed vocabulary, joined with single spaces.
    Text parts of one message are joined with newlines. The reply is cut at the max-tokens
    limit (finish: OpenAI/Mistral ``length``, Anthropic ``max_tokens``, Gemini
    ``MAX_TOKENS``), then right before the first stop sequence, which is not returned
    (``stop`` / ``stop_sequence`` with the ``stop_sequence`` field set / ``STOP`` / ``stop``).
    Completion tokens = the words actually returned. Streams send one token per content
    chunk with its leading space, so the concatenation equals the non-stream text.

    prompt_tokens = sum over messages, the system prompt counting as one message when
    present, of (number of whitespace words in the message's text + 3).

Reserved triggers (anywhere in any message or system text)
    ``[[context_length]]``  the provider's context-length error: OpenAI 400
                            ``context_length_exceeded``; Anthropic 400 "prompt is too long: N
                            tokens > M maximum"; Gemini 400 INVALID_ARGUMENT "The input token
                            count (N) exceeds ..."; Mistral 400 "... too large for model ...";
                            Azure and the compatible services as OpenAI; Ollama 400 "the input
                            length exceeds the context length"; Cohere 400 "too many tokens: ...".
    ``[[blocked]]``         Gemini: HTTP 200, ``promptFeedback.blockReason: SAFETY``, no
                            candidates. Other providers answer normally.
    ``[[refusal]]``         OpenAI ``message.content: null`` + ``message.refusal``; Anthropic
                            ``stop_reason: "refusal"``; Gemini ``finishReason: SAFETY`` with no
                            content; Azure HTTP 400 ``content_filter`` (its prompt filter);
                            Mistral, Ollama, Cohere and the compatible services have no refusal
                            on the wire and answer normally.

Faults (:data:`FAULT_KINDS`) are drawn only for requests that passed auth and validation.
Provider-specific shapes: ``quota`` is OpenAI 429 ``insufficient_quota``, Anthropic 400
"credit balance is too low", Gemini 429 RESOURCE_EXHAUSTED (daily quota, no RetryInfo),
Mistral 429 gateway message; ``overloaded`` is Anthropic 529, OpenAI 503 "engine is currently
overloaded", Gemini 503 UNAVAILABLE "The model is overloaded", Mistral 503 with its
service-tier-capacity error; ``bad_gateway`` is Cloudflare's JSON for OpenAI and Google's
HTML page for Gemini. ``stream_cut`` closes the connection mid-body (the chunked body never
ends); ``stream_error`` ends a 200 stream with the provider's error event and no terminator.
Both strike half-way through the text unless ``Fault(after_chunks=N)`` says after how many
content chunks (0: before any text).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flyllm.emulator.faults import FAULT_KINDS, Fault
from flyllm.emulator.stats import key_fingerprint
from flyllm.emulator.text import generate_text

if TYPE_CHECKING:
    from flyllm.emulator.server import Emulator

__all__ = ["FAULT_KINDS", "Emulator", "Fault", "generate_text", "key_fingerprint"]


def __getattr__(name: str) -> object:
    # The server pulls in aiohttp.web; load it only when the Emulator is asked for.
    if name == "Emulator":
        from flyllm.emulator.server import Emulator

        return Emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
