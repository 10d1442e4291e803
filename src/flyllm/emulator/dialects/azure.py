"""Azure OpenAI chat completions, docs/WIRE-more.md section 1.

OpenAI's bodies behind Azure's URLs: ``POST /openai/deployments/{deployment}/chat/completions
?api-version=...`` and the v1 surface ``POST /openai/v1/chat/completions``; ``api-key`` auth
(or a Bearer token); Azure's error bodies (``{"error": {"code", "message"}}``); prompt and
completion filter results on every answer; a stream that opens with a ``choices: []`` chunk
carrying ``prompt_filter_results``. The ``[[refusal]]`` trigger is answered as Azure's prompt
filter does: HTTP 400 ``content_filter`` with ``innererror``. Models lists (docs/WIRE-models.md
section 5): ``GET /openai/models?api-version=...`` (Azure's ModelList: capabilities, lifecycle,
``created_at``) and ``GET /openai/v1/models`` (OpenAI's list); there is no deployments list.
Tools as OpenAI's; dated api-versions before 2023-12-01-preview do not know ``tools`` and
``tool_choice``, and before 2024-07-01-preview ``parallel_tool_calls`` (an unrecognized
argument, as Azure answered 2024-05-01-preview and 2024-06-01).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from flyllm.emulator.catalog import CatalogModel, catalog
from flyllm.emulator.dialects.openai import KNOWN_FIELDS, OpenAIDialect
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply
from flyllm.emulator.wire import Answer, Conversation, Route, StreamPlan, dumps, find_trigger

__all__ = ["AzureDialect"]

_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
V1_ROUTE = "/openai/v1/chat/completions"
V1_EMBED_ROUTE = "/openai/v1/embeddings"
_EMBED_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/embeddings")
MODELS_ROUTE = "/openai/models"
V1_MODELS_ROUTE = "/openai/v1/models"
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
V1_VERSIONS = frozenset({"v1", "preview", "latest"})
STREAM_OPTIONS_SINCE = "2024-09-01"
SINCE = {
    "stream_options": STREAM_OPTIONS_SINCE,
    "tools": "2023-12-01",
    "tool_choice": "2023-12-01",
    "parallel_tool_calls": "2024-07-01",
}
"""The first dated api-version that takes each of these fields."""
JSON_SCHEMA_SINCE = "2024-08-01"
"""The first dated api-version that takes ``response_format`` of type json_schema."""
AZURE_FIELDS = KNOWN_FIELDS | {"data_sources", "enhancements", "user_security_context"}
ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
_SAFE = {"filtered": False, "severity": "safe"}
CHOICE_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
PROMPT_FILTERS = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            **CHOICE_FILTERS,
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]
_FAULTS = {
    "server_error": (500, "InternalServerError", "The server had an error processing your "
                     "request. Please retry."),
    "bad_gateway": (502, "BadGateway", "Bad gateway."),
    "unavailable": (503, "ServiceUnavailable", "The service is temporarily unable to process "
                    "your request. Please try again later."),
    "overloaded": (503, "ServiceUnavailable", "The engine is currently overloaded, please try "
                   "again later"),
}  # fmt: skip


def azure_error(http_status: int, code: str, message: str, **extra: Any) -> Answer:
    """An answer with Azure's error body (``extra`` adds fields such as ``innererror``)."""
    return Answer(http_status, dumps({"error": {"code": code, "message": message, **extra}}))


def _azure_model(model: CatalogModel) -> dict[str, Any]:
    """One entry of Azure's dated ModelList (a base model, inference available)."""
    return {
        "status": "succeeded",
        "capabilities": {
            "fine_tune": False, "inference": True, "completion": False,
            "chat_completion": model.chat, "embeddings": not model.chat,
        },
        "lifecycle_status": "generally-available",
        "deprecation": {"inference": model.created + 2 * 365 * 86_400},
        "id": model.id,
        "created_at": model.created,
        "object": "model",
    }  # fmt: skip


class AzureDialect(OpenAIDialect):
    """Azure OpenAI's dialect: two URL surfaces, api-versions, api-key, content filters."""

    provider = "azure"

    def base_url(self, root: str) -> str:
        """``http://host:port``: the resource endpoint (``azure_endpoint`` in the SDK)."""
        return root

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """A deployment's chat completions (with ``api-version``) or the v1 surface; the
        models lists ``GET /openai/models`` (with ``api-version``) and ``/openai/v1/models``."""
        if method == "GET" and path == V1_MODELS_ROUTE:
            return Route("v1 models", version=query.get("api-version", "v1"), listing=True)
        if method == "GET" and path == MODELS_ROUTE and "api-version" in query:
            return Route("models", version=query["api-version"], listing=True)
        if method != "POST":
            return None
        if path == V1_ROUTE:
            return Route("v1", version=query.get("api-version", "v1"))
        if path == V1_EMBED_ROUTE:
            return Route("v1", version=query.get("api-version", "v1"), embed=True)
        embed = _EMBED_DEPLOYMENT.fullmatch(path)
        if embed is not None and "api-version" in query:
            return Route("deployments", model=embed.group(1), version=query["api-version"],
                         embed=True)  # fmt: skip
        found = _DEPLOYMENT.fullmatch(path)
        if found is None or "api-version" not in query:
            return None  # Azure answers a missing api-version with 404 Resource not found
        return Route("deployments", model=found.group(1), version=query["api-version"])

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The ``api-key`` header, else a Bearer token."""
        key = headers.get("api-key")
        return key.strip() or None if key is not None else super().credentials(headers, query)

    def request_id(self) -> str:
        """A UUID, as ``apim-request-id`` carries."""
        return str(uuid.uuid4())

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """401 ``Access denied ...`` for a missing and a wrong key alike."""
        return azure_error(401, "401", ACCESS_DENIED)

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """404 ``Resource not found`` (also for a missing api-version)."""
        return azure_error(404, "404", "Resource not found")

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """The api-version, the prompt filter, then OpenAI's validation (the model comes from
        the URL on the deployments surface)."""
        version = route.version
        dated = route.label == "deployments"
        if (dated and not _DATED.fullmatch(version)) or (not dated and version not in V1_VERSIONS):
            return azure_error(400, "BadRequest", "API version not supported")
        if find_trigger(_texts(body)) == "refusal":
            return azure_error(
                400, "content_filter", FILTER_MESSAGE, param="prompt", type=None, status=400,
                innererror={"code": "ResponsibleAIPolicyViolation",
                            "content_filter_result": PROMPT_FILTERS[0]["content_filter_results"]},
            )  # fmt: skip
        extra = sorted(set(body) - AZURE_FIELDS)
        if extra:
            return self._unrecognized(extra[0])
        too_new = [name for name, since in SINCE.items() if name in body and version < since]
        if dated and too_new:
            return self._unrecognized(too_new[0])
        fmt = body.get("response_format")
        schema_format = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
        if dated and schema_format and version < JSON_SCHEMA_SINCE:
            return azure_error(
                400,
                "BadRequest",
                "response_format value as json_schema is enabled only for api versions "
                f"{JSON_SCHEMA_SINCE}-preview and later",
            )
        if dated:
            body = {**body, "model": route.model or ""}
        plain = {k: v for k, v in body.items() if k in KNOWN_FIELDS}
        return super().parse(route, plain, headers, rid)

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """OpenAI's embeddings behind Azure's addressing (the deployment names the model)."""
        dated = route.label == "deployments"
        if (dated and not _DATED.fullmatch(route.version)) or (
            not dated and route.version not in V1_VERSIONS
        ):
            return azure_error(400, "BadRequest", "API version not supported")
        if dated:
            body = {**body, "model": route.model or ""}
        return super().embed(route, body, input_limit, rid)

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """Every model the resource can use, at once: Azure's ModelList on the dated surface,
        OpenAI's list on v1. Never the deployments."""
        version = route.version
        dated = route.label == "models"
        if (dated and not _DATED.fullmatch(version)) or (not dated and version not in V1_VERSIONS):
            return azure_error(400, "BadRequest", "API version not supported")
        models = catalog("azure", self.models)
        if dated:
            return Answer(200, dumps({"data": [_azure_model(m) for m in models], "object": "list"}))
        return super().list_models(route, query, rid)

    @staticmethod
    def _unrecognized(name: str) -> Answer:
        message = f"Unrecognized request argument supplied: {name}"
        return azure_error(400, "BadRequest", message, type="invalid_request_error", param=None)

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """404 ``DeploymentNotFound``."""
        return azure_error(
            404,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment "
            "within the last 5 minutes, please wait a moment and try again.",
        )

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """Azure's 429 (retry hint in headers and text), 401, 5xx; quota as OpenAI's."""
        kind = fault.kind
        if kind == "rate_limit":
            wait = fault.retry_after or 0.0
            seconds = max(1, round(wait))
            message = (
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
                "exceeded token rate limit of your current OpenAI S0 pricing tier."
                f" Please retry after {seconds} second{'' if seconds == 1 else 's'}. Please go "
                "here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit."
            )
            answer = azure_error(429, "429", message)
            if fault.retry_after is not None:
                answer.headers = {
                    "retry-after": str(seconds),
                    "retry-after-ms": str(round(wait * 1000)),
                }
            answer.throttled_for = wait
        elif kind == "unauthorized":
            answer = self.auth_error("wrong", rid)
        elif kind in _FAULTS:
            status, code, text = _FAULTS[kind]
            answer = azure_error(status, code, text)
        else:
            return super().fault_answer(fault, conv, rid)
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """OpenAI's completion with ``prompt_filter_results`` and per-choice filter results."""
        data = json.loads(super().body(conv, reply, rid))
        data["prompt_filter_results"] = PROMPT_FILTERS
        data["choices"][0]["content_filter_results"] = CHOICE_FILTERS
        del data["service_tier"]
        return dumps(data)

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """OpenAI's chunks, after Azure's opening ``choices: []`` filter chunk."""
        plan = super().stream(conv, reply, rid)
        opening = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": PROMPT_FILTERS,
        }
        plan.head.insert(0, b"data: " + dumps(opening) + b"\n\n")
        return plan

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """``apim-request-id``, ``x-request-id`` and the remaining-requests/tokens counters."""
        left_requests, _ = self._requests.take(1)
        left_tokens, _ = self._tokens.take(sum(tokens))
        if throttled_for is not None:
            left_requests = 0
        return {
            "apim-request-id": rid,
            "x-request-id": rid,
            "x-ms-region": "Sweden Central",
            "x-ratelimit-remaining-requests": str(left_requests),
            "x-ratelimit-remaining-tokens": str(left_tokens),
        }


def _texts(body: dict[str, Any]) -> list[str]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        m["content"] for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]
