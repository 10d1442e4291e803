"""Model discovery: the models a provider offers to a key, from its models endpoint.

``await manager.list_models("anthropic", key)`` (or ``flyllm models anthropic``) sends one GET
per page and returns :class:`ModelInfo` rows whose ``id`` is the name to give ``add_provider``
as ``model=``. The request and the answer's shape are each provider's (its ``SPEC.models`` and
``SPEC.auth``, in its module under :mod:`flyllm.providers`); this module only drives the paging
(docs/WIRE-models.md):

============================  =============================================  =================
family                        endpoint                                       pages
============================  =============================================  =================
openai and every compatible   ``GET {base}/models``                          one
mistral                       ``GET {base}/v1/models``                       one
anthropic                     ``GET {base}/v1/models?limit=1000``            ``after_id``
google (Gemini)               ``GET {base}/{api_version}/models``            ``pageToken``
azure, dated api-version      ``GET {endpoint}/openai/models?api-version=``  one
azure, v1 surface             ``GET {endpoint}/openai/v1/models``            one
ollama                        ``GET {base}/api/tags``                        one
cohere                        ``GET {base}/v1/models?endpoint=chat``         ``page_token``
============================  =============================================  =================

Where a provider says which models can chat, only those are kept: Gemini's with
``generateContent`` among their ``supportedGenerationMethods`` (ids without the ``models/``
prefix), Cohere's with ``chat`` among their ``endpoints``, Mistral's and Azure's unless their
``capabilities.completion_chat`` (Mistral) or ``capabilities.chat_completion`` (Azure) is
false. The others (OpenAI, the compatible services, Ollama) list everything, embedding models
included: their lists do not say.

Azure lists the models a resource can use, not its deployments: ``model=`` on Azure is a
deployment name, often but not always the model's. Deployments can only be listed through the
Azure management API (an Entra ID token, not an API key), so a base_url naming one deployment
is a ConfigurationError.

Base URLs follow ``add_provider``: the argument, else the SDK environment variable
(``OPENAI_BASE_URL``...), else the provider's default. A failed page raises the provider's
classified error (AuthenticationError for a wrong key...); an unreadable body raises
MalformedResponseError; at most :data:`MAX_PAGES` pages are fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyllm._transport import Transport
from flyllm._wire import HttpRequest, HttpResponse, Timeouts
from flyllm.errors import ConfigurationError, MalformedResponseError
from flyllm.providers import requires_key, resolve_provider_type, spec_for
from flyllm.providers._common import excerpt, loads, merge_headers
from flyllm.providers.base import Endpoint, ModelInfo, ProviderSpec
from flyllm.routing.settings import env_base_url as _env_base_url
from flyllm.types import ProviderType

__all__ = ["MAX_PAGES", "ModelInfo", "list_models"]

MAX_PAGES = 50
"""Pages fetched at most; a provider that keeps sending a next-page token past them (a loop)
gets a MalformedResponseError."""


async def list_models(
    transport: Transport,
    provider: ProviderType | str,
    api_key: str,
    base_url: str | None = None,
    *,
    api_version: str | None = None,
    options: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts,
) -> list[ModelInfo]:
    """Every model ``provider`` lists for ``api_key`` (every page), in the provider's order.

    ``base_url``, ``api_version``, ``options`` and ``headers`` mean what they mean to
    ``add_provider``. Raises ConfigurationError for a set-up that cannot be listed, the
    provider's classified ProviderError for a failed page, MalformedResponseError for an
    unreadable one."""
    ptype = resolve_provider_type(provider)
    spec = spec_for(ptype)
    impl = spec.provider
    if not isinstance(api_key, str):
        raise ConfigurationError(f"the api_key for {ptype.value} must be a string")
    if not api_key and requires_key(ptype):
        raise ConfigurationError(f"the api_key for {ptype.value} is empty")
    url = base_url or _env_base_url(ptype) or impl.default_base_url
    if not url:
        raise ConfigurationError(f"listing {ptype.value} models needs a base_url")
    endpoint = Endpoint(
        "", api_key, url.rstrip("/"), api_version, dict(headers or {}), dict(options or {})
    )
    found: list[ModelInfo] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        request = HttpRequest(
            "GET", spec.models.url(endpoint, cursor), _headers(endpoint, spec), b""
        )
        response = await transport.send(request, timeouts)
        if not 200 <= response.status < 300:
            raise impl.classify_error(response, endpoint)
        models, cursor = spec.models.page(_load(response, ptype.value), ptype.value)
        found.extend(models)
        if cursor is None:
            return found
        if cursor in seen:
            raise MalformedResponseError(
                f"{ptype.value} sent the same next-page token twice", status=response.status,
                provider=ptype.value,
            )  # fmt: skip
        seen.add(cursor)
    raise MalformedResponseError(
        f"{ptype.value} model list still had more pages after {MAX_PAGES}", status=200,
        provider=ptype.value,
    )  # fmt: skip


def _headers(endpoint: Endpoint, spec: ProviderSpec) -> dict[str, str]:
    headers = {"accept": "application/json", **spec.auth(endpoint)}
    if endpoint.headers:
        merge_headers(headers, endpoint.headers)
    return headers


def _load(response: HttpResponse, provider: str) -> Any:
    """The JSON object (or, for services that send one, array) of a 2xx body."""
    try:
        data = loads(response.body)  # JSON nested too deeply is unreadable, not a crash
    except ValueError:
        data = None
    if not isinstance(data, dict | list):
        raise MalformedResponseError(
            f"{provider} sent a model list that is not a JSON object: {excerpt(response.body)}",
            status=response.status,
            provider=provider,
        )
    return data
