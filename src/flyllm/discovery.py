"""Model discovery: the models a provider offers to a key, from its models endpoint.

``await manager.list_models("anthropic", key)`` (or ``flyllm models anthropic``) sends one GET
per page and returns :class:`ModelInfo` rows whose ``id`` is the name to give ``add_provider``
as ``model=``. The request and the answer's shape are per provider family (docs/WIRE-models.md):

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

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from flyllm.errors import ConfigurationError, MalformedResponseError
from flyllm.providers import PRESETS, get_provider, requires_key, resolve_provider_type
from flyllm.providers._common import excerpt, join_url, loads, merge_headers, rfc3339_delay
from flyllm.providers.anthropic import DEFAULT_ANTHROPIC_VERSION
from flyllm.providers.azure import DEFAULT_AZURE_API_VERSION, azure_target
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse
from flyllm.providers.google import DEFAULT_GOOGLE_VERSION
from flyllm.settings import env_base_url as _env_base_url
from flyllm.transport import Timeouts, Transport
from flyllm.types import ProviderType

__all__ = ["MAX_PAGES", "ModelInfo", "list_models"]

MAX_PAGES = 50
"""Pages fetched at most; a provider that keeps sending a next-page token past them (a loop)
gets a MalformedResponseError."""

PAGE_SIZE = 1000
"""The page size asked of the paginating APIs (the largest each accepts)."""


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """One model a provider offers.

    ``id`` is the name to pass as ``model=`` to ``add_provider`` (on Azure: the model, whose
    deployment is often but not always named alike); ``provider`` the flyllm provider name;
    ``created`` epoch seconds when the provider says; ``context_window`` and
    ``max_output_tokens`` in tokens when the provider says; ``raw`` the provider's own entry.
    """

    id: str
    provider: str
    display_name: str | None = None
    created: int | None = None
    owned_by: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The normalised fields as a JSON-able dict (``raw`` left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "raw"}


Page = tuple[list[ModelInfo], str | None]
"""One page read: its models and the cursor of the next page (None on the last one)."""


@dataclass(slots=True, frozen=True)
class _Family:
    """How one provider family lists models: the URL of a page (the cursor is None for the
    first), the key headers, and the reading of one page's JSON."""

    url: Callable[[Endpoint, str | None], str]
    auth: Callable[[Endpoint], dict[str, str]]
    page: Callable[[Any, str], Page]


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
    impl = get_provider(ptype)
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
    family = _FAMILIES[ptype]
    found: list[ModelInfo] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        request = HttpRequest("GET", family.url(endpoint, cursor), _headers(endpoint, family), b"")
        response = await transport.send(request, timeouts)
        if not 200 <= response.status < 300:
            raise impl.classify_error(response, endpoint)
        models, cursor = family.page(_load(response, ptype.value), ptype.value)
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


def _headers(endpoint: Endpoint, family: _Family) -> dict[str, str]:
    headers = {"accept": "application/json", **family.auth(endpoint)}
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


def _malformed(provider: str, what: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"{provider} model list has {what}", status=200, provider=provider
    )


# --- reading values -------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    """A whole number from JSON (Cohere sends context lengths as floats), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _first(item: Mapping[str, Any], keys: tuple[str, ...], read: Callable[[Any], Any]) -> Any:
    """The first of ``keys`` whose value ``read`` accepts (not None)."""
    for key in keys:
        value = read(item.get(key))
        if value is not None:
            return value
    return None


def _epoch(value: Any) -> int | None:
    """Epoch seconds of an RFC 3339 timestamp; None when absent, unreadable or the epoch itself
    (Anthropic's "release date unknown")."""
    if not isinstance(value, str):
        return None
    seconds = rfc3339_delay(value, lambda: 0.0)
    return int(seconds) if seconds else None


def _items(data: Any, key: str, provider: str, *, required: bool = True) -> list[dict[str, Any]]:
    """The list of entries under ``key``; MalformedResponseError unless it is a list of
    objects (a missing key is an empty list where the provider omits empty lists)."""
    items = data.get(key) if isinstance(data, dict) else None
    if items is None and not required and isinstance(data, dict):
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _malformed(provider, f"no list of objects in {key!r}")
    return items


def _name(item: Mapping[str, Any], keys: tuple[str, ...], provider: str) -> str:
    name = _first(item, keys, _str)
    if name is None:
        raise _malformed(provider, f"an entry without {' or '.join(keys)}: {excerpt(str(item))}")
    return str(name)


# --- the families ---------------------------------------------------------------------------


def _bearer(endpoint: Endpoint) -> dict[str, str]:
    return {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}


def _openai_page(data: Any, provider: str, *, chat_flag: str | None = None) -> Page:
    """``{"object": "list", "data": [...]}`` (or a bare array, as Together sends). Services add
    their own fields: Groq ``context_window`` and ``max_completion_tokens``; Together
    ``display_name``, ``organization`` and ``context_length``; OpenRouter ``name``,
    ``context_length`` and ``top_provider.max_completion_tokens``; vLLM ``max_model_len``;
    Mistral ``name`` and ``max_context_length``; Azure ``created_at``. ``chat_flag`` names the
    capability that says whether a model can chat (Mistral, Azure)."""
    items = data if isinstance(data, list) else _items(data, "data", provider)
    if not all(isinstance(i, dict) for i in items):
        raise _malformed(provider, "an entry that is not an object")
    models = []
    for item in items:
        capabilities = item.get("capabilities")
        if chat_flag and isinstance(capabilities, dict) and capabilities.get(chat_flag) is False:
            continue
        top = item.get("top_provider")
        max_output = _first(item, ("max_completion_tokens", "max_output_tokens"), _int)
        if max_output is None and isinstance(top, dict):
            max_output = _int(top.get("max_completion_tokens"))
        models.append(
            ModelInfo(
                _name(item, ("id",), provider),
                provider,
                display_name=_first(item, ("display_name", "name"), _str),
                created=_first(item, ("created", "created_at"), _int),
                owned_by=_first(item, ("owned_by", "organization"), _str),
                context_window=_first(item, _CONTEXT_KEYS, _int),
                max_output_tokens=max_output,
                raw=item,
            )
        )
    return models, None


_CONTEXT_KEYS = ("context_window", "context_length", "max_context_length", "max_model_len")


def _anthropic_url(endpoint: Endpoint, cursor: str | None) -> str:
    query: dict[str, Any] = {"limit": PAGE_SIZE}
    if cursor is not None:
        query["after_id"] = cursor
    return join_url(endpoint.base_url, "/v1/models?" + urlencode(query))


def _anthropic_auth(endpoint: Endpoint) -> dict[str, str]:
    headers = {"anthropic-version": endpoint.api_version or DEFAULT_ANTHROPIC_VERSION}
    if endpoint.api_key:
        headers["x-api-key"] = endpoint.api_key
    return headers


def _anthropic_page(data: Any, provider: str) -> Page:
    """``{"data": [{"id", "display_name", "created_at", "max_input_tokens", "max_tokens"...}],
    "has_more", "first_id", "last_id"}``; the next page is ``after_id=last_id``."""
    models = [
        ModelInfo(
            _name(item, ("id",), provider),
            provider,
            display_name=_str(item.get("display_name")),
            created=_epoch(item.get("created_at")),
            context_window=_int(item.get("max_input_tokens")),
            max_output_tokens=_int(item.get("max_tokens")),
            raw=item,
        )
        for item in _items(data, "data", provider)
    ]
    if data.get("has_more") is not True:
        return models, None
    last = _str(data.get("last_id"))
    if last is None:
        raise _malformed(provider, "has_more without a last_id")
    return models, last


def _google_url(endpoint: Endpoint, cursor: str | None) -> str:
    query: dict[str, Any] = {"pageSize": PAGE_SIZE}
    if cursor is not None:
        query["pageToken"] = cursor
    version = endpoint.api_version or DEFAULT_GOOGLE_VERSION
    return join_url(endpoint.base_url, f"/{version}/models?" + urlencode(query))


def _google_auth(endpoint: Endpoint) -> dict[str, str]:
    return {"x-goog-api-key": endpoint.api_key} if endpoint.api_key else {}


def _google_page(data: Any, provider: str) -> Page:
    """``{"models": [{"name": "models/x", "displayName", "inputTokenLimit",
    "outputTokenLimit", "supportedGenerationMethods"}], "nextPageToken"}``; an empty page
    omits ``models``. Only generateContent models, ids without ``models/``."""
    models = []
    for item in _items(data, "models", provider, required=False):
        name = _name(item, ("name",), provider)
        methods = item.get("supportedGenerationMethods")
        if not isinstance(methods, list) or "generateContent" not in methods:
            continue
        models.append(
            ModelInfo(
                name.removeprefix("models/"),
                provider,
                display_name=_str(item.get("displayName")),
                context_window=_int(item.get("inputTokenLimit")),
                max_output_tokens=_int(item.get("outputTokenLimit")),
                raw=item,
            )
        )
    return models, _str(data.get("nextPageToken"))


def _azure_url(endpoint: Endpoint, cursor: str | None) -> str:
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


def _azure_auth(endpoint: Endpoint) -> dict[str, str]:
    return {"api-key": endpoint.api_key} if endpoint.api_key else {}


def _ollama_page(data: Any, provider: str) -> Page:
    """``{"models": [{"name", "model", "modified_at", "size", "digest", "details"}]}``;
    ``model`` is the name ``/api/chat`` takes (e.g. ``llama3.2:latest``)."""
    models = [
        ModelInfo(_name(item, ("model", "name"), provider), provider, raw=item)
        for item in _items(data, "models", provider, required=False)
    ]
    return models, None


def _cohere_url(endpoint: Endpoint, cursor: str | None) -> str:
    query: dict[str, Any] = {"page_size": PAGE_SIZE, "endpoint": "chat"}
    if cursor is not None:
        query["page_token"] = cursor
    return join_url(endpoint.base_url, "/v1/models?" + urlencode(query))


def _cohere_page(data: Any, provider: str) -> Page:
    """``{"models": [{"name", "endpoints", "context_length", "is_deprecated"...}],
    "next_page_token"}``; only models whose ``endpoints`` include ``chat``."""
    models = [
        ModelInfo(
            _name(item, ("name",), provider),
            provider,
            context_window=_int(item.get("context_length")),
            raw=item,
        )
        for item in _items(data, "models", provider)
        if isinstance(item.get("endpoints"), list) and "chat" in item["endpoints"]
    ]
    return models, _str(data.get("next_page_token"))


def _path(path: str) -> Callable[[Endpoint, str | None], str]:
    """The URL of a list that has one page: ``path`` after the base URL."""
    return lambda endpoint, _cursor: join_url(endpoint.base_url, path)


_OPENAI = _Family(_path("/models"), _bearer, _openai_page)
_FAMILIES: dict[ProviderType, _Family] = {
    ProviderType.OPENAI: _OPENAI,
    ProviderType.OPENAI_COMPATIBLE: _OPENAI,
    **{preset.kind: _OPENAI for preset in PRESETS},
    ProviderType.MISTRAL: _Family(
        _path("/v1/models"), _bearer, functools.partial(_openai_page, chat_flag="completion_chat")
    ),
    ProviderType.ANTHROPIC: _Family(_anthropic_url, _anthropic_auth, _anthropic_page),
    ProviderType.GOOGLE: _Family(_google_url, _google_auth, _google_page),
    ProviderType.AZURE: _Family(
        _azure_url, _azure_auth, functools.partial(_openai_page, chat_flag="chat_completion")
    ),
    ProviderType.OLLAMA: _Family(_path("/api/tags"), _bearer, _ollama_page),
    ProviderType.COHERE: _Family(_cohere_url, _bearer, _cohere_page),
}
