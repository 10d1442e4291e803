"""Image URLs downloaded for providers that take images only as bytes (flyllm._images): a
tiny loopback server serves an image, or misbehaves (too large, a redirect, not an image,
too slow, a 404); a scripted provider whose ``image_url_schemes`` is empty records what its
``build`` receives. Every failure is the request's own InvalidRequestError naming the URL
without its query, before anything is sent, and costs the instance nothing."""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from flyllm import (
    AllAttemptsFailedError,
    ConfigurationError,
    GenerationRequest,
    Image,
    InvalidRequestError,
    LlmManager,
    Message,
    ServerError,
)
from flyllm._images import shown_url
from flyllm._wire import Timeouts
from flyllm.providers.base import HttpRequest, HttpResponse, url_scheme
from flyllm.types import ErrorKind
from tests.hostile.conftest import budget, http_server
from tests.unit.test_run_tools import Script, ScriptedProvider, Step, answer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100
BOMB = gzip.compress(PNG + b"\x00" * (16 << 20))  # 16 MiB once inflated
SECRET = "-".join(["tok", "en", "value"])  # a query value that must never be shown


class BySchemes(ScriptedProvider):
    """A scripted provider that fetches the image URLs of its ``image_url_schemes``."""

    image_url_schemes: frozenset[str] = frozenset()

    def accepts_image_url(self, url: str) -> bool:
        return url_scheme(url) in self.image_url_schemes


class BytesOnly(BySchemes):
    """A provider that takes images only as bytes (Ollama's way)."""


class TakesUrls(BySchemes):
    image_url_schemes = frozenset({"http", "https"})


class TakesGs(BySchemes):
    """A provider that fetches its own storage URIs (Gemini's way) and no http ones."""

    image_url_schemes = frozenset({"gs"})


class Served:
    """The image server: ``routes`` maps a path to a handler; ``hits`` counts requests."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.routes: dict[str, Any] = {
            "/cat.png": lambda: web.Response(body=PNG, content_type="image/png"),
            "/dog.jpg": lambda: web.Response(body=JPEG, content_type="image/jpeg"),
            "/page.html": lambda: web.Response(text="<html>hi</html>", content_type="text/html"),
            "/moved.png": lambda: web.Response(
                status=302, headers={"Location": "http://127.0.0.2:1/elsewhere.png"}
            ),
            "/big.png": lambda: web.Response(body=PNG + b"\x00" * 5000),
            "/bomb.png": lambda: web.Response(body=BOMB, headers={"Content-Encoding": "gzip"}),
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.headers.append(dict(request.headers))
        if request.path == "/slow.png":
            await asyncio.sleep(0.6)  # past the read timeout of 0.3 s
        if request.path == "/huge.png":  # 64 MiB, streamed: the limit must stop it early
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(PNG)
            for _ in range(1024):
                await response.write(b"\x00" * 65536)
            return response
        make = self.routes.get(request.path)
        return make() if make else web.Response(status=404, text="no such image")


@asynccontextmanager
async def setup(
    steps: Sequence[Step],
    providers: Sequence[type[ScriptedProvider]] = (BytesOnly,),
    **options: Any,
) -> AsyncIterator[tuple[LlmManager, Script, Served, str]]:
    """A manager whose instances answer from ``steps`` (their LLM calls never leave the
    process) and an image server; yields (manager, script, server, its base URL)."""
    served = Served()
    script = Script(steps)
    async with http_server(served.handle) as url, LlmManager(**options) as manager:
        for i in range(len(providers)):
            key = "-".join(["fake", "key", str(i)])
            manager.add_provider("openai", key, f"m{i}", base_url=url + "/v1")
        for instance, kind in zip(manager._all, providers, strict=True):
            instance.provider = kind(instance.provider, instance.id, script)
            instance.capabilities = instance.capabilities | {"images"}

        async def no_llm(request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
            return HttpResponse(200, {}, b"{}")  # the LLM: the script answers

        manager._transport.send = no_llm  # type: ignore[method-assign]
        yield manager, script, served, url


def ask(*urls: str, detail: str | None = None) -> GenerationRequest:
    parts: list[str | Image] = ["What is in these pictures?"]
    parts += [Image.from_url(u, detail=detail) for u in urls]
    return GenerationRequest(messages=[Message.user(parts)])


def images_sent(script: Script, attempt: int = 0) -> list[Image]:
    return [i for m in script.sent[attempt].messages for i in m.images]


async def test_a_url_image_is_downloaded_once_and_sent_as_bytes() -> None:
    steps: list[Step] = [ServerError("busy", status=503), answer("a cat")]
    async with setup(steps, (BytesOnly, BytesOnly)) as (manager, script, served, url):
        request = ask(f"{url}/cat.png?sig={SECRET}", f"{url}/dog.jpg", detail="low")
        response = await manager.generate(request)
    assert response.content == "a cat" and response.attempts == 2
    for attempt in (0, 1):  # the failover reuses the download
        sent = images_sent(script, attempt)
        assert [(i.data, i.url, i.media_type, i.detail) for i in sent] == [
            (PNG, None, "image/png", "low"),
            (JPEG, None, "image/jpeg", "low"),
        ]
    assert served.hits == {"/cat.png": 1, "/dog.jpg": 1}
    assert served.headers[0]["Accept"] == "image/*"
    assert not any("authorization" in {k.lower() for k in h} for h in served.headers)
    assert script.sent[0].messages[0].content == "What is in these pictures?"
    # the caller's conversation is left as it was
    assert request.messages is not None and request.messages[0].images[0].url is not None


async def test_a_provider_that_takes_the_url_gets_it_and_nothing_is_downloaded() -> None:
    async with setup([answer()], (TakesUrls,)) as (manager, script, served, url):
        await manager.generate(ask(f"{url}/cat.png"))
    assert [i.url for i in images_sent(script)] == [f"{url}/cat.png"]
    assert served.hits == {}


async def test_a_stream_downloads_too() -> None:
    async with setup([], (BytesOnly,)) as (manager, script, served, url):
        del script
        with pytest.raises(InvalidRequestError, match="answered HTTP 404"):
            async with manager.stream(ask(f"{url}/gone.png")) as stream:
                async for _ in stream:
                    pass
    assert served.hits == {"/gone.png": 1}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/gone.png", "answered HTTP 404: check the URL"),
        ("/moved.png", r"redirect to http://127\.0\.0\.2:1 \(HTTP 302\), which flyllm does not"),
        ("/page.html", "is unusable: these bytes are not an image flyllm recognises"),
        ("/big.png", r"larger than 4096 bytes \(max_image_bytes\)"),
        ("/bomb.png", r"larger than 4096 bytes \(max_image_bytes\)"),
        ("/slow.png", r"no answer in time \(read timeout 0.3 s.*try again later"),
    ],
)
async def test_a_failed_download_is_the_requests_own_error(path: str, message: str) -> None:
    async with setup([answer()] * 2, (BytesOnly, BytesOnly), read_timeout=0.3,
                     max_image_bytes=4096) as (manager, script, served, url):  # fmt: skip
        with budget(seconds=2, megabytes=30):
            with pytest.raises(InvalidRequestError, match=message) as caught:
                await manager.generate(ask(f"{url}{path}?key={SECRET}"))
            failed = (await manager.batch_generate([ask(f"{url}{path}")]))[0]
        health = manager.instance_health()
    text = str(caught.value)
    assert f"the image at {url}{path}" in text and SECRET not in text and "?" not in text
    assert script.sent == []  # nothing went to a provider
    assert served.hits == {path: 2}  # no failover, no retry: one download per request
    assert failed.error_kind == ErrorKind.INVALID_REQUEST.value
    assert all(h.consecutive_failures == 0 and h.state == "closed" for h in health)
    assert all(i.failures == 0 for i in manager.instances())


async def test_a_huge_image_is_cut_off_within_the_limit() -> None:
    async with setup([], (BytesOnly,), max_image_bytes=1 << 20) as (manager, _, served, url):
        with (
            budget(seconds=3, megabytes=30),
            pytest.raises(InvalidRequestError, match=r"larger than 1048576 bytes"),
        ):
            await manager.generate(ask(f"{url}/huge.png"))
    assert served.hits == {"/huge.png": 1}


async def test_urls_flyllm_cannot_fetch_fail_over_and_data_uris_are_decoded() -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    gs = GenerationRequest(messages=[Message.user(["see", Image(url="gs://bucket/cat.png")])])
    async with setup([answer()] * 2, (BytesOnly, TakesGs)) as (manager, script, _, url):
        del url
        response = await manager.generate(gs)  # the first cannot take it: the second can
        assert response.instance_id == 1 and response.attempts == 2
        assert manager.instance_health()[0].consecutive_failures == 0
        manager.disable_instance(1)
        with pytest.raises(AllAttemptsFailedError) as caught:
            await manager.generate(gs)
        await manager.generate(
            GenerationRequest(messages=[Message.user(["see", Image(url=data_uri)])])
        )
    refused = caught.value.attempts[0]
    assert refused.kind is ErrorKind.UNSUPPORTED
    assert "does not take images at gs: URLs" in str(refused)
    assert [i.url for i in images_sent(script, 0)] == ["gs://bucket/cat.png"]
    assert [(i.data, i.media_type) for i in images_sent(script, 1)] == [(PNG, "image/png")]
    assert manager.instances()[0].capabilities >= {"images"}  # not learned away


async def test_requests_without_image_urls_pay_nothing() -> None:
    manager = LlmManager()
    manager.add_provider("openai", "-".join(["fake", "key"]), "m", base_url="http://127.0.0.1:9")
    manager._all[0].capabilities = manager._all[0].capabilities | {"images"}
    by_bytes = GenerationRequest(messages=[Message.user(["x", Image.from_bytes(PNG)])])
    assert not manager._plan(GenerationRequest(prompt="hello")).image_urls
    assert not manager._plan(by_bytes).image_urls
    assert manager._plan(ask("http://127.0.0.1:9/cat.png")).image_urls


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:99999/x.png", "at http://127.0.0.1:99999/x.png: it is not a valid"),
        ("http://[::1/x.png", "at <an unreadable URL>: it is not a valid http"),
        ("http://127.0.0.1:9/x.png", r"Cannot connect to host.*; try again later, or pass"),
        ("cat.png", "the image URL 'cat.png' has no scheme"),
        ("C:\\photos\\cat.png", "has no scheme"),
    ],
)
async def test_urls_that_lead_nowhere_are_the_requests_error(url: str, message: str) -> None:
    async with setup([], (BytesOnly,), connect_timeout=1.0) as (manager, script, _, __):
        with (
            budget(seconds=3, megabytes=30),
            pytest.raises(InvalidRequestError, match=message) as caught,
        ):
            await manager.generate(ask(url))
    assert script.sent == [] and "base_url" not in str(caught.value)


def test_urls_are_shown_without_query_or_credentials() -> None:
    shown = shown_url(f"https://user:{SECRET}@img.example/a/b.png?sig={SECRET}#frag")
    assert shown == "https://***@img.example/a/b.png"


def test_max_image_bytes_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_image_bytes"):
        LlmManager(max_image_bytes=0)
