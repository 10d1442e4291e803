"""The emulated models endpoints on the wire: shape, auth (the chat routes' key rules and error
bodies), paging where the provider pages, and faults."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault
from flyllm.emulator.catalog import DEFAULTS, PAGE_SIZE

KEY = "models-key-0001"
ANTHROPIC = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
BEARER = {"Authorization": f"Bearer {KEY}"}


async def get(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | None = None,
    **query: str,
) -> tuple[int, aiohttp.ClientResponse, Any]:
    """GET ``url``; the status, the response and the JSON body (the raw bytes if not JSON)."""
    async with session.get(url, headers=headers or {}, params=query) as response:
        raw = await response.read()
    try:
        return response.status, response, json.loads(raw)
    except ValueError:
        return response.status, response, raw


@pytest.fixture
async def emulators() -> AsyncIterator[Callable[..., Any]]:
    started: list[Emulator] = []

    async def start(provider: str, **kwargs: Any) -> Emulator:
        kwargs.setdefault("api_keys", {KEY})
        emu = Emulator(provider, **kwargs)
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.stop()


# --- OpenAI, Mistral, Azure, Ollama, compatible services: one page -----------------------------


async def test_openai_list_shape_and_served_models(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("openai", models={"gpt-4o-mini", "ft:gpt-4o-mini:acme::x1"})
    status, response, body = await get(session, emu.base_url + "/models", BEARER)
    assert status == 200 and response.headers["x-request-id"].startswith("req_")
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["ft:gpt-4o-mini:acme::x1", "gpt-4o-mini"]
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and isinstance(model["created"], int)
    assert emu.requests[-1].route == "/v1/models" and emu.requests[-1].json is None
    assert emu.stats()["by_route"] == {"/v1/models": 1}


async def test_openai_default_catalogue_and_auth(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("openai")
    _, _, body = await get(session, emu.base_url + "/models", BEARER)
    assert [m["id"] for m in body["data"]] == [m.id for m in DEFAULTS["openai"]]
    status, _, missing = await get(session, emu.base_url + "/models")
    assert status == 401 and "didn't provide an API key" in missing["error"]["message"]
    status, _, wrong = await get(session, emu.base_url + "/models", {"Authorization": "Bearer x"})
    assert status == 401 and wrong["error"]["code"] == "invalid_api_key"
    async with session.post(emu.base_url + "/models", headers=BEARER, json={}) as response:
        assert response.status == 404  # listing is GET only


async def test_mistral_cards(emulators: Callable[..., Any], session: aiohttp.ClientSession) -> None:
    emu = await emulators("mistral")
    status, _, body = await get(session, emu.base_url + "/v1/models", BEARER)
    assert status == 200 and body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    assert set(cards) == {m.id for m in DEFAULTS["mistral"]}
    assert cards["mistral-embed"]["capabilities"]["completion_chat"] is False
    large = cards["mistral-large-latest"]
    assert large["type"] == "base" and large["capabilities"]["completion_chat"] is True
    assert large["max_context_length"] == 131072 and large["owned_by"] == "mistralai"
    status, _, denied = await get(session, emu.base_url + "/v1/models")
    assert status == 401 and denied["message"] == "Unauthorized"


async def test_azure_dated_and_v1_lists(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("azure", models={"gpt-4o"})
    key = {"api-key": KEY}
    url = emu.base_url + "/openai/models"
    status, response, dated = await get(session, url, key, **{"api-version": "2024-10-21"})
    assert status == 200 and response.headers["apim-request-id"]
    (entry,) = dated["data"]
    assert dated["object"] == "list" and entry["id"] == "gpt-4o"
    assert entry["capabilities"]["chat_completion"] is True
    assert entry["lifecycle_status"] == "generally-available"
    assert isinstance(entry["created_at"], int) and "created" not in entry
    status, _, v1 = await get(session, emu.base_url + "/openai/v1/models", BEARER)
    assert status == 200 and v1["data"][0].keys() == {"id", "object", "created", "owned_by"}
    assert (await get(session, url, key))[0] == 404  # no api-version: Resource not found
    status, _, bad = await get(session, url, key, **{"api-version": "latest-ish"})
    assert status == 400 and bad["error"]["message"] == "API version not supported"
    status, _, denied = await get(
        session, url, {"api-key": "nope"}, **{"api-version": "2024-10-21"}
    )
    assert status == 401 and denied["error"]["code"] == "401"
    assert (await get(session, emu.base_url + "/openai/deployments", key))[0] == 404


async def test_ollama_tags_keyless_unless_keys(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    local = await emulators("ollama", api_keys=None)
    status, _, body = await get(session, local.base_url + "/api/tags")
    assert status == 200
    first = body["models"][0]
    assert first["name"] == first["model"] == "llama3.2:latest"
    assert first["digest"] and first["size"] > 0 and first["modified_at"].endswith("Z")
    assert first["details"]["format"] == "gguf" and first["details"]["families"]
    cloud = await emulators("ollama")
    status, _, denied = await get(session, cloud.base_url + "/api/tags")
    assert status == 401 and denied == {"error": "unauthorized"}
    assert (await get(session, cloud.base_url + "/api/tags", BEARER))[0] == 200


@pytest.mark.parametrize(
    ("flavour", "path"),
    [
        ("groq", "/openai/v1/models"),
        ("together", "/v1/models"),
        ("perplexity", "/models"),
        ("deepseek", "/models"),
        ("openrouter", "/api/v1/models"),
        ("fireworks", "/inference/v1/models"),
        ("lmstudio", "/v1/models"),
        ("vllm", "/v1/models"),
    ],
)
async def test_compatible_services(
    emulators: Callable[..., Any], session: aiohttp.ClientSession, flavour: str, path: str
) -> None:
    emu = await emulators(flavour)
    assert emu.base_url + "/models" == emu.url + path
    status, _, body = await get(session, emu.url + path, BEARER)
    assert status == 200
    entries = body if flavour == "together" else body["data"]
    assert [e["id"] for e in entries] == [m.id for m in DEFAULTS[flavour]]
    assert (await get(session, emu.url + path, {"Authorization": "Bearer wrong"}))[0] == 401


async def test_compatible_service_fields(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    groq = await emulators("groq")
    (_, _, body) = await get(session, groq.base_url + "/models", BEARER)
    assert body["data"][0]["context_window"] == 131072 and body["data"][0]["active"] is True
    together = await emulators("together")
    (_, _, rows) = await get(session, together.base_url + "/models", BEARER)
    assert isinstance(rows, list) and rows[0]["type"] == "chat" and rows[-1]["type"] == "embedding"
    router = await emulators("openrouter")
    (_, _, body) = await get(session, router.base_url + "/models", BEARER)
    assert body["data"][0]["top_provider"]["max_completion_tokens"] == 16384
    local = await emulators("lmstudio", api_keys=None)
    assert (await get(session, local.base_url + "/models"))[0] == 200  # no key needed


# --- Anthropic, Gemini, Cohere: pages ---------------------------------------------------------


async def test_anthropic_pages_forward_and_back(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("anthropic")
    url = emu.base_url + "/v1/models"
    ids: list[str] = []
    query: dict[str, str] = {"limit": "1000"}
    pages = 0
    while True:
        status, response, page = await get(session, url, ANTHROPIC, **query)
        assert status == 200 and response.headers["request-id"].startswith("req_")
        pages += 1
        assert len(page["data"]) <= PAGE_SIZE
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        ids += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            break
        query["after_id"] = page["last_id"]
    assert ids == [m.id for m in DEFAULTS["anthropic"]] and pages == 3
    first = (await get(session, url, ANTHROPIC))[2]["data"][0]
    assert first["type"] == "model" and first["display_name"] == "Claude Opus 4.6"
    assert first["created_at"] == "2026-02-04T00:00:00Z" and first["lifecycle"] == "active"
    assert (first["max_input_tokens"], first["max_tokens"], first["line"]) == (
        200000,
        128000,
        "opus",
    )
    _, _, back = await get(session, url, ANTHROPIC, before_id=ids[3], limit="5")
    assert [m["id"] for m in back["data"]] == ids[1:3] and back["has_more"] is True


async def test_anthropic_list_errors(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("anthropic")
    url = emu.base_url + "/v1/models"
    for query in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"after_id": "claude-0"}):
        status, _, body = await get(session, url, ANTHROPIC, **query)
        assert status == 400 and body["error"]["type"] == "invalid_request_error", query
    status, _, body = await get(session, url, {"x-api-key": KEY})
    assert status == 400 and body["error"]["message"] == "anthropic-version: header is required"
    status, _, body = await get(session, url, {**ANTHROPIC, "x-api-key": "bad"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    bearer = {"Authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}
    assert (await get(session, url, bearer))[0] == 200


async def test_gemini_pages_with_tokens(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("google")
    names: list[str] = []
    query = {"pageSize": "1000"}
    for version in ("v1", "v1beta"):
        names.clear()
        query.pop("pageToken", None)
        while True:
            status, response, page = await get(
                session, f"{emu.base_url}/{version}/models", {"x-goog-api-key": KEY}, **query
            )
            assert status == 200 and response.headers["content-type"].startswith("application/json")
            assert len(page["models"]) <= PAGE_SIZE
            names += [m["name"] for m in page["models"]]
            if "nextPageToken" not in page:
                break
            query["pageToken"] = page["nextPageToken"]
        assert names == [f"models/{m.id}" for m in DEFAULTS["google"]]
    _, _, page = await get(session, emu.base_url + "/v1/models", key=KEY)  # ?key= works too
    flash = page["models"][1]
    assert flash["displayName"] == "Gemini 2.5 Flash" and flash["inputTokenLimit"] == 1048576
    assert "generateContent" in flash["supportedGenerationMethods"]


async def test_gemini_list_errors(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("google")
    url = emu.base_url + "/v1/models"
    status, _, body = await get(session, url)
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    status, _, body = await get(session, url, {"x-goog-api-key": "wrong"})
    assert status == 400 and body["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    forged = base64.urlsafe_b64encode(b"emu:99").decode()
    for query in ({"pageToken": "not-a-token"}, {"pageToken": forged}, {"pageSize": "-1"}):
        status, _, body = await get(session, url, {"x-goog-api-key": KEY}, **query)
        assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT", query


async def test_cohere_pages_and_endpoint_filter(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("cohere")
    url = emu.base_url + "/v1/models"
    everything = []
    query = {"page_size": "1000"}
    while True:
        status, _, page = await get(session, url, BEARER, **query)
        assert status == 200 and len(page["models"]) <= PAGE_SIZE
        everything += page["models"]
        if "next_page_token" not in page:
            break
        query["page_token"] = page["next_page_token"]
    assert [m["name"] for m in everything] == [m.id for m in DEFAULTS["cohere"]]
    assert everything[0]["endpoints"] == ["chat", "generate", "summarize"]
    assert everything[0]["context_length"] == 256000
    _, _, chat = await get(session, url, BEARER, endpoint="chat", page_size="5.0")
    assert all("chat" in m["endpoints"] for m in chat["models"]) and "next_page_token" in chat
    for bad in ({"endpoint": "dance"}, {"page_size": "0"}, {"page_token": "zz"}):
        status, _, body = await get(session, url, BEARER, **bad)
        assert status == 400 and body["message"].startswith("invalid request"), bad
    status, _, body = await get(session, url)
    assert status == 401 and body["message"] == "no api key supplied"


# --- faults ---------------------------------------------------------------------------------


async def test_error_faults_answer_in_the_providers_shape(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("openai")
    url = emu.base_url + "/models"
    emu.schedule("rate_limit", retry_after=2.5)
    emu.schedule("server_error")
    emu.schedule("unauthorized")
    status, response, body = await get(session, url, BEARER)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after-ms"] == "2500"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    status, _, body = await get(session, url, BEARER)
    assert status == 500 and body["error"]["type"] == "server_error"
    status, _, body = await get(session, url, BEARER)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert (await get(session, url, BEARER))[0] == 200
    stats = emu.stats()
    assert stats["faults_injected"] == {"rate_limit": 1, "server_error": 1, "unauthorized": 1}
    assert stats["responses_by_status"] == {"429": 1, "500": 1, "401": 1, "200": 1}


@pytest.mark.parametrize(
    ("provider", "path", "headers", "status"),
    [
        ("anthropic", "/v1/models", ANTHROPIC, 529),
        ("google", "/v1/models", {"x-goog-api-key": KEY}, 503),
        ("cohere", "/v1/models", BEARER, 503),
        ("ollama", "/api/tags", BEARER, 503),
    ],
)
async def test_overload_faults_per_provider(
    emulators: Callable[..., Any],
    session: aiohttp.ClientSession,
    provider: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    emu = await emulators(provider)
    emu.schedule("overloaded")
    assert (await get(session, emu.url + path, headers))[0] == status
    assert (await get(session, emu.url + path, headers))[0] == 200


async def test_a_rejected_request_does_not_consume_a_fault(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("anthropic")
    url = emu.base_url + "/v1/models"
    emu.schedule("server_error")
    assert (await get(session, url, {**ANTHROPIC, "x-api-key": "bad"}))[0] == 401
    assert (await get(session, url, ANTHROPIC, limit="0"))[0] == 400
    assert (await get(session, url, ANTHROPIC))[0] == 500


async def test_malformed_cut_and_reset_faults(
    emulators: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    emu = await emulators("cohere")
    url = emu.base_url + "/v1/models"
    emu.schedule("malformed")
    status, _, raw = await get(session, url, BEARER)
    assert status == 200 and isinstance(raw, bytes) and raw.startswith(b'{"models":')
    emu.schedule("stream_cut")
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(session, url, BEARER)
    emu.set_faults([Fault("reset")])
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(session, url, BEARER)
    emu.set_faults([])
    assert (await get(session, url, BEARER))[0] == 200
