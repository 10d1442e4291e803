"""Gemini embeddings for the emulator: ``POST /{v1,v1beta}/models/{model}:batchEmbedContents``
(what google-genai's ``embed_content`` calls) and ``:embedContent`` (one content).

After Gemini's API reference: a batch of at most 100 ``requests``, each an EmbedContentRequest
(``model`` naming the URL's model, ``content.parts[].text``, ``taskType`` from the TaskType
enum, ``title``, ``outputDimensionality``); unknown fields refused as proto JSON parsing does.
Vectors from :mod:`flyllm.emulator.embeddings`, normalised only at full size (as Gemini);
an input over the limit (2048 words, or the emulator's ``context_window``) is the "input
token count ... exceeds the maximum" 400; usage = words, in ``usageMetadata``. The wording of
the batch-size and per-field 400s follows what users report; the SDK source does not pin it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flyllm.emulator.embeddings import full_dimensions, vector
from flyllm.emulator.text import count_words
from flyllm.emulator.wire import Answer

__all__ = ["EMBED_METHODS", "embed_answer"]

EMBED_METHODS = ("batchEmbedContents", "embedContent")
MAX_BATCH = 100
MAX_INPUT_TOKENS = 2048
TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED",
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)
_ENTRY_FIELDS = frozenset(
    {
        "model",
        "content",
        "taskType",
        "task_type",
        "title",
        "outputDimensionality",
        "output_dimensionality",
    }
)
_TASK_ENUM = "type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType"

Invalid = Callable[[str], Answer]
Ok = Callable[[Any], Answer]
"""A 200 answer carrying a JSON payload, in the dialect's style."""


def embed_answer(
    method: str, model: str, body: dict[str, Any], limit: int | None, invalid: Invalid,
    ok: Ok,
) -> Answer:  # fmt: skip
    """The answer of ``method`` for ``body`` (``limit``: words an input may have;
    ``invalid`` makes a 400, ``ok`` a 200)."""
    if method == "embedContent":
        unknown = sorted(set(body) - _ENTRY_FIELDS)
        if unknown:
            return invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}": '
                           "Cannot find field.")  # fmt: skip
        one = _entry(body, model, "EmbedContentRequest", "", invalid)
        if isinstance(one, Answer):
            return one
        return _vectors([one], model, limit, invalid, ok, single=True)
    unknown = sorted(set(body) - {"requests"})
    if unknown:
        return invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}": '
                       "Cannot find field.")  # fmt: skip
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return invalid("* BatchEmbedContentsRequest.requests: requests is not specified\n")
    if len(requests) > MAX_BATCH:
        return invalid(
            f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in "
            "one batch\n"
        )
    entries = []
    for i, raw in enumerate(requests):
        if not isinstance(raw, dict):
            return invalid(f"Invalid value at 'requests[{i}]', expected an EmbedContentRequest.")
        unknown = sorted(set(raw) - _ENTRY_FIELDS)
        if unknown:
            return invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                           f"'requests[{i}]': Cannot find field.")  # fmt: skip
        if raw.get("model") != f"models/{model}":
            return invalid(
                f"* BatchEmbedContentsRequest.requests[{i}].model: the model of each request "
                f"must be the batch's, models/{model}\n"
            )
        entry = _entry(raw, model, "BatchEmbedContentsRequest", f"requests[{i}].", invalid)
        if isinstance(entry, Answer):
            return entry
        entries.append(entry)
    return _vectors(entries, model, limit, invalid, ok, single=False)


def _entry(
    raw: dict[str, Any], model: str, request: str, where: str, invalid: Invalid
) -> tuple[str, int | None] | Answer:
    """One EmbedContentRequest's text and output size, or the 400."""
    content = raw.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = [p.get("text") for p in parts or () if isinstance(p, dict)]
    if not parts or not all(isinstance(t, str) for t in texts) or not "".join(texts):  # type: ignore[arg-type]
        return invalid(f"* {request}.{where}content.parts: contents is not specified\n")
    task = raw.get("taskType", raw.get("task_type"))
    if task is not None and task not in TASK_TYPES:
        return invalid(f"Invalid value at '{where}task_type' ({_TASK_ENUM}), \"{task}\"")
    dims = raw.get("outputDimensionality", raw.get("output_dimensionality"))
    if dims is not None:
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            return invalid(f"Invalid value at '{where}output_dimensionality' (TYPE_INT32), "
                           f'"{dims}"')  # fmt: skip
        if dims > full_dimensions(model):
            return invalid(
                f"* {request}.{where}output_dimensionality: must be at most "
                f"{full_dimensions(model)} for models/{model}\n"
            )
    return "".join(texts), dims  # type: ignore[arg-type]


def _vectors(
    entries: list[tuple[str, int | None]], model: str, limit: int | None, invalid: Invalid,
    ok: Ok, *, single: bool,
) -> Answer:  # fmt: skip
    cap = limit or MAX_INPUT_TOKENS
    counts = [count_words(text) for text, _ in entries]
    for n in counts:
        if n > cap:
            return invalid(
                f"The input token count ({n}) exceeds the maximum number of tokens allowed ({cap})."
            )
    embeddings = [{"values": vector(text, model, dims, normalise=False)} for text, dims in entries]
    total = sum(counts)
    usage = {"promptTokenCount": total, "totalTokenCount": total}
    if single:
        return ok({"embedding": embeddings[0], "usageMetadata": usage})
    return ok({"embeddings": embeddings, "usageMetadata": usage})
