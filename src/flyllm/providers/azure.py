"""Azure OpenAI chat completions: OpenAI's wire format behind Azure's URLs and ``api-key`` header.

Two surfaces, picked per instance (docs/WIRE-more.md section 1):

- **deployments** (the default): ``POST {endpoint}/openai/deployments/{deployment}/chat/
  completions?api-version={version}``; ``version`` is the instance's ``api_version``, default
  ``2024-10-21`` (the latest GA data-plane version); ``deployment`` is ``options["deployment"]``,
  else the instance's model (as the AzureOpenAI SDK does with ``model``).
- **v1**: ``POST {endpoint}/openai/v1/chat/completions``, the model (deployment name) in the
  body and no dated version; chosen with ``api_version="v1"`` (or ``"preview"``, which adds
  ``?api-version=preview``), or by a base_url that ends in ``/openai/v1``.

``{endpoint}`` is ``https://{resource}.openai.azure.com`` with ``options["resource"]``, or the
instance's base_url, which wins (a custom domain, an APIM gateway, the emulator). A base_url
that already names ``/openai/deployments/{name}`` is used as is. Auth is ``api-key: KEY``.

Parameters as OpenAI's, except ``max_tokens``: dated versions take ``max_tokens`` (2024-10-21,
the GA spec, has no ``max_completion_tokens``), v1 takes ``max_completion_tokens`` (reasoning
models reject ``max_tokens``). ``stop`` keeps the first 4. Streams ask for usage with
``stream_options`` on v1 and on dated versions from 2024-09-01 (older ones reject it).

Answers and errors are OpenAI's: streams may start with a chunk that has ``choices: []``,
``prompt_filter_results`` and an empty model (skipped); a ``content_filter`` error (HTTP 400,
``innererror.code: ResponsibleAIPolicyViolation``) or finish raises ContentFilterError; 404
``DeploymentNotFound`` -> NotFoundError; 429 -> RateLimitError with ``retry-after-ms`` /
``retry-after``, or the "retry after N seconds" of the message. Request ids: ``apim-request-id``.

Tools are sent as OpenAI's. Dated api-versions took ``tools`` from 2023-12-01-preview (older
ones: UnsupportedFeatureError before sending) and ``parallel_tool_calls`` from
2024-07-01-preview (older ones: left out with a note; the model's default applies).

Embeddings go to the same addressing with ``/embeddings`` for ``/chat/completions``
(``{endpoint}/openai/deployments/{deployment}/embeddings?api-version=...`` or
``{endpoint}/openai/v1/embeddings``), in OpenAI's shape (:mod:`flyllm.providers.openai_embed`).

Structured output and images are sent as OpenAI's (:mod:`flyllm.providers.chat_output`).
Dated api-versions took image parts and ``json_object`` from 2023-12-01-preview and
``json_schema`` from 2024-08-01-preview: an older version is UnsupportedFeatureError
(feature "images" or "structured_output") before sending.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from flyllm.errors import ConfigurationError, UnsupportedFeatureError
from flyllm.params import OutputFormat
from flyllm.providers._common import Clock, dumps, json_headers, left_out
from flyllm.providers.base import Endpoint, HttpRequest, ModelListing, ProviderSpec, ToolSet
from flyllm.providers.openai import OPENAI_RATE_LIMITS, ChatDialect, OpenAIProvider, openai_page
from flyllm.types import Message, ProviderType

__all__ = [
    "AZURE_BASE_URL",
    "DEFAULT_AZURE_API_VERSION",
    "SPEC",
    "AzureOpenAIProvider",
    "AzureTarget",
    "azure_auth",
    "azure_target",
]

AZURE_BASE_URL = "https://{resource}.openai.azure.com"
"""The endpoint template; ``{resource}`` comes from ``options["resource"]``."""

DEFAULT_AZURE_API_VERSION = "2024-10-21"
"""The api-version of the deployments surface when the instance names none (latest GA)."""

V1_VERSIONS = frozenset({"v1", "preview"})
"""``api_version`` values that select the v1 surface."""

STREAM_USAGE_SINCE = "2024-09-01"
"""The first dated api-version that takes ``stream_options`` (2024-09-01-preview)."""

TOOLS_SINCE = "2023-12-01"
"""The first dated api-version that takes ``tools`` and ``tool_choice`` (2023-12-01-preview)."""

PARALLEL_SINCE = "2024-07-01"
"""The first dated api-version that takes ``parallel_tool_calls`` (2024-07-01-preview)."""

JSON_SCHEMA_SINCE = "2024-08-01"
"""The first dated api-version that takes ``response_format`` json_schema (2024-08-01-preview);
``json_object`` came with 2023-12-01-preview, as did image parts (GPT-4 Turbo with Vision)."""

# A dated api-version older than the one a feature came with: the feature and its first version.
_FEATURE_SINCE = {"tools": TOOLS_SINCE, "images": TOOLS_SINCE, "json": TOOLS_SINCE,
                  "structured_output": JSON_SCHEMA_SINCE}  # fmt: skip

OPTION_KEYS = frozenset({"resource", "deployment"})
_RESOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_RETRY_TEXT = re.compile(r"retry after (\d+(?:\.\d+)?) (?:second|sec)", re.IGNORECASE)


@dataclass(slots=True, frozen=True)
class AzureTarget:
    """Where one instance's requests go: the URL, whether it is the v1 surface, and whether
    streams may ask for usage."""

    url: str
    v1: bool
    stream_usage: bool


def azure_target(endpoint: Endpoint) -> AzureTarget:
    """The URL and surface for an instance (see the module doc); ConfigurationError when
    neither a resource nor a base_url says where the deployment lives."""
    unknown = set(endpoint.options) - OPTION_KEYS
    if unknown:
        raise ConfigurationError(
            f"unknown azure option(s) {sorted(unknown)}; valid: deployment, resource"
        )
    base = (endpoint.base_url or AZURE_BASE_URL).rstrip("/")
    if "{resource}" in base:
        resource = endpoint.options.get("resource")
        if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
            raise ConfigurationError(
                "azure instances need options={'resource': '<resource name>'} "
                "or a base_url such as https://<resource>.openai.azure.com"
            )
        base = base.replace("{resource}", resource)
    version = endpoint.api_version or DEFAULT_AZURE_API_VERSION
    path = urlsplit(base).path
    preview = "?api-version=preview" if version == "preview" else ""
    if path.endswith("/openai/v1"):
        return AzureTarget(f"{base}/chat/completions{preview}", True, True)
    if version in V1_VERSIONS:
        root = base.removesuffix("/openai")
        return AzureTarget(f"{root}/openai/v1/chat/completions{preview}", True, True)
    query = f"?api-version={quote(version, safe='')}"
    usage = version >= STREAM_USAGE_SINCE
    if "/openai/deployments/" in path:
        return AzureTarget(f"{base}/chat/completions{query}", False, usage)
    deployment = endpoint.options.get("deployment", endpoint.model)
    if not isinstance(deployment, str) or not deployment:
        raise ConfigurationError("azure option 'deployment' must be a non-empty string")
    root = base.removesuffix("/openai")
    name = quote(deployment, safe="")
    return AzureTarget(f"{root}/openai/deployments/{name}/chat/completions{query}", False, usage)


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: the OpenAI format with Azure's addressing, auth and api-versions;
    stateless, shared by every instance."""

    request_id_header = "apim-request-id"

    def __init__(self, *, clock: Clock = time.time) -> None:
        super().__init__(
            name="azure",
            default_base_url=AZURE_BASE_URL,
            max_tokens_field="max_tokens",
            max_stop=4,
            embeddings=True,
            embed_base64=True,
            clock=clock,
        )
        self._v1_dialect = ChatDialect("azure", "max_completion_tokens", 2.0, 4, "seed")

    def __repr__(self) -> str:
        return "AzureOpenAIProvider()"

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
        """The POST to the deployment's (or the v1 surface's) chat completions URL."""
        target = azure_target(endpoint)
        version = endpoint.api_version or DEFAULT_AZURE_API_VERSION
        if not target.v1:
            _check_version(version, tools, output, messages)
        notes: list[str] = []
        body = self.chat_body(
            endpoint.model,
            messages,
            params,
            stream,
            notes,
            dialect=self._v1_dialect if target.v1 else None,
            stream_usage=target.stream_usage,
            tools=tools,
            output=output,
        )
        if not target.v1 and version < PARALLEL_SINCE and "parallel_tool_calls" in body:
            del body["parallel_tool_calls"]
            left_out("parallel_tool_calls", self.name, notes, f"is not in api-version {version}")
        headers = json_headers(endpoint, stream, azure_auth)
        return HttpRequest("POST", target.url, headers, dumps(body), tuple(notes))

    def embed_url(self, endpoint: Endpoint) -> str:
        """The chat URL's addressing with ``/embeddings`` for ``/chat/completions``."""
        head, _, query = azure_target(endpoint).url.rpartition("/chat/completions")
        return f"{head}/embeddings{query}"

    def embed_headers(self, endpoint: Endpoint) -> dict[str, str]:
        """``api-key`` and JSON."""
        return json_headers(endpoint, False, azure_auth)

    def rate_limit_hint(
        self, headers: Mapping[str, str], etype: str | None, message: str
    ) -> float | None:
        """OpenAI's reset headers, else Azure's hint in the text of a 429 ("Please retry
        after 2 seconds"), read in the whole message (it comes late in long ones)."""
        hint = super().rate_limit_hint(headers, etype, message)
        match = _RETRY_TEXT.search(message) if hint is None else None
        return float(match.group(1)) if match else hint


def _check_version(
    version: str, tools: ToolSet | None, output: OutputFormat | None, messages: Sequence[Message]
) -> None:
    """UnsupportedFeatureError before sending when the dated ``version`` predates a feature
    the request needs (tools, images, JSON mode, json_schema)."""
    needs = {
        "tools": tools is not None,
        "images": any(m.parts and m.images for m in messages),
        "json": output is not None and output.schema is None,
        "structured_output": output is not None and output.schema is not None,
    }
    for need, since in _FEATURE_SINCE.items():
        if needs[need] and version < since:
            feature = "structured_output" if need == "json" else need
            raise UnsupportedFeatureError(
                f"azure api-version {version} has no {need.replace('_', ' ')} (it came with "
                f"{since}-preview); use api_version={DEFAULT_AZURE_API_VERSION!r} or later",
                provider="azure",
                feature=feature,
            )


def azure_auth(endpoint: Endpoint) -> dict[str, str]:
    """``api-key`` (none for an empty key)."""
    return {"api-key": endpoint.api_key} if endpoint.api_key else {}


def _models_url(endpoint: Endpoint, cursor: str | None) -> str:
    """``{endpoint}/openai/models?api-version=V`` (dated) or ``{endpoint}/openai/v1/models``."""
    if "/openai/deployments/" in urlsplit(endpoint.base_url).path:
        raise ConfigurationError(
            "this azure base_url names one deployment, and Azure OpenAI cannot list deployments "
            "with an API key (only the Azure management API can, e.g. `az cognitiveservices "
            "account deployment list`); give the resource endpoint "
            "(https://<resource>.openai.azure.com) to list the models the resource offers"
        )
    # The chat URL's addressing rules (resource, v1 surface) apply as they are; "-" stands
    # for the deployment, which a model list does not name.
    target = azure_target(dataclasses.replace(endpoint, model="-"))
    root, _, query = target.url.partition("/chat/completions")
    if target.v1:
        return f"{root}/models{query}"
    resource = root.rpartition("/openai/deployments/")[0]
    version = quote(endpoint.api_version or DEFAULT_AZURE_API_VERSION, safe="")
    return f"{resource}/openai/models?api-version={version}"


SPEC = ProviderSpec(
    ProviderType.AZURE,
    AzureOpenAIProvider(),
    azure_auth,
    ModelListing(_models_url, functools.partial(openai_page, chat_flag="chat_completion")),
    aliases=("azure_openai", "azure-openai"),
    base_url_env="AZURE_OPENAI_ENDPOINT",
    key_env=("AZURE_OPENAI_API_KEY",),
    rate_limits=OPENAI_RATE_LIMITS,
)
"""Azure OpenAI: the models a resource offers (not its deployments: listing those takes the
Azure management API), one page, without those whose ``capabilities.chat_completion`` is false."""
