"""Structured output and images on every provider together, over the emulators on loopback:
the same JsonSchema (nested objects, an array, an enum, an optional property, a ``$ref``), a
pydantic class, "json" and a stream give ``parsed`` values of the same shape, each valid for
the ORIGINAL schema; the same user turn with two images of two formats and one http URL
(served on loopback, downloaded for the providers that take only bytes) is acknowledged by
every provider; tools + images + a response_format through ``run_tools`` on each provider
that can (Cohere cannot: it fails over); a ``bad_output`` fault fails over to a provider of
another mechanism; all instances bad carry each raw answer; a model that cannot is learned.

One emulator per provider and one manager for the module (a task per variant)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel

from flyllm import (
    AllAttemptsFailedError,
    GenerationRequest,
    Image,
    JsonSchema,
    LlmManager,
    Message,
    StructuredOutputError,
    TaskDefinition,
    Tool,
)
from flyllm._schema import validate
from flyllm.emulator import Emulator
from flyllm.emulator.structured import BAD_OUTPUT_TEXT

pytestmark = pytest.mark.asyncio(loop_scope="module")

# variant -> (provider, model, options)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "openai": ("openai", "gpt-4o-mini", {}),
    "azure": ("azure", "gpt-4o", {}),
    "anthropic-native": ("anthropic", "claude-sonnet-4-5", {"structured_output": "native"}),
    "anthropic-tool": ("anthropic", "claude-sonnet-4-5", {"structured_output": "tool"}),
    "google-2.5": ("google", "gemini-2.5-flash", {}),
    "google-3": ("google", "gemini-3-flash-preview", {}),
    "mistral": ("mistral", "mistral-small-latest", {}),
    "cohere": ("cohere", "command-a", {}),
    "ollama": ("ollama", "llama3.2", {}),
    "groq": ("groq", "llama-3.3-70b", {}),
}
INVOICE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer": {"$ref": "#/$defs/party"},
        "status": {"type": "string", "enum": ["draft", "sent", "paid"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku", "qty"],
            },
        },
        "note": {"type": "string"},
    },
    "required": ["customer", "status", "lines"],
    "$defs": {
        "party": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
            "required": ["name", "address"],
        }
    },
}
SCHEMA = JsonSchema("invoice", INVOICE)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
ACK = "[3 images: image/png, image/jpeg, image/png]"


class Line(BaseModel):
    """One invoice line."""

    sku: str
    qty: int


class Order(BaseModel):
    """An order with its lines."""

    customer: str
    lines: list[Line]


def key(provider: str) -> str:
    return "" if provider == "ollama" else f"k-{provider}-" + "x" * 12


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[str]:
    """A loopback server with a PNG at /cat.png; yields its URL."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/cat.png"
    await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def manager() -> AsyncIterator[LlmManager]:
    """Every variant behind its provider's emulator; task ``<variant>`` routes to it alone."""
    async with AsyncExitStack() as stack:
        mgr = await stack.enter_async_context(LlmManager(read_timeout=5.0))
        emus: dict[str, Emulator] = {}
        for variant, (provider, model, options) in VARIANTS.items():
            if provider not in emus:
                emus[provider] = await stack.enter_async_context(Emulator(provider=provider))
            mgr.add_provider(provider, key(provider), model, [TaskDefinition(variant)],
                             base_url=emus[provider].base_url, options=options)  # fmt: skip
        yield mgr


Instance = tuple[str, str, dict[str, Any]]


@asynccontextmanager
async def two(
    *instances: Instance, tasks: tuple[TaskDefinition, ...] = ()
) -> AsyncIterator[tuple[LlmManager, Emulator, Emulator]]:
    """A fresh manager with two instances (provider, model, options), each behind its own
    emulator, tried in that order when neither was used yet."""
    async with AsyncExitStack() as stack:
        mgr = await stack.enter_async_context(LlmManager())
        emus = []
        for provider, model, options in instances:
            emu = await stack.enter_async_context(Emulator(provider=provider))
            mgr.add_provider(provider, key(provider), model, tasks, base_url=emu.base_url,
                             options=options)  # fmt: skip
            emus.append(emu)
        yield mgr, emus[0], emus[1]


def shape(value: Any) -> Any:
    """The value's structure: keys and JSON types, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


async def test_one_schema_gives_one_shape_on_every_provider(manager: LlmManager) -> None:
    shapes = {}
    for variant in VARIANTS:
        response = await manager.generate(
            GenerationRequest("Extract the invoice", task=variant, response_format=SCHEMA)
        )
        assert response.success, (variant, response.error)
        assert validate(response.parsed, INVOICE) == [], (variant, response.parsed)
        # The optional "note" is given by most and left out by the forced answer tool.
        shapes[variant] = {k: v for k, v in shape(response.parsed).items() if k != "note"}
    assert len({repr(s) for s in shapes.values()}) == 1, shapes
    assert set(shapes["openai"]) == {"customer", "status", "lines"}


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_a_pydantic_class_json_and_a_stream(manager: LlmManager, variant: str) -> None:
    order = await manager.generate(
        GenerationRequest("Extract the order", task=variant, response_format=Order)
    )
    assert isinstance(order.parsed, Order) and order.parsed.lines, (variant, order.error)
    anything = await manager.generate(
        GenerationRequest("Tell me a fact", task=variant, response_format="json")
    )
    assert isinstance(anything.parsed, dict), (variant, anything.error)
    request = GenerationRequest("Extract the invoice", task=variant, response_format=SCHEMA)
    async with manager.stream(request) as stream:
        text = "".join([chunk.text async for chunk in stream])
    final = stream.response
    assert final is not None and final.content == text
    assert validate(final.parsed, INVOICE) == [] and final.parsed["customer"]["address"]


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_two_images_and_a_url_reach_every_provider(
    manager: LlmManager, served: str, variant: str
) -> None:
    turn = Message.user(
        ["Describe these", Image.from_bytes(PNG), Image.from_bytes(JPEG), Image.from_url(served)]
    )
    response = await manager.generate(GenerationRequest(task=variant, messages=[turn]))
    assert response.success, (variant, response.error)
    assert response.content.startswith(ACK), (variant, response.content)


def get_weather(city: str) -> dict[str, object]:
    """Current weather for a city."""
    return {"city": city, "temperature_c": 3}


REPORT = JsonSchema(
    "report",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "summary": {"type": "string"}},
        "required": ["city", "summary"],
    },
)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "cohere"])
async def test_tools_images_and_a_schema_through_run_tools(
    manager: LlmManager, variant: str
) -> None:
    turn = Message.user(["Weather report for Oslo?", Image.from_bytes(PNG)])
    request = GenerationRequest(task=variant, messages=[turn], response_format=REPORT)
    response = await manager.run_tools(request, [get_weather])
    assert response.success and not response.tool_calls, (variant, response.error)
    assert [m.role for m in response.messages] == ["user", "assistant", "tool", "assistant"]
    assert response.messages[1].tool_calls[0].name == "get_weather"
    assert validate(response.parsed, REPORT.schema) == [], (variant, response.parsed)


async def test_bad_output_fails_over_to_another_mechanism() -> None:
    tool_mode = {"structured_output": "tool"}
    instances: tuple[Instance, ...] = (
        ("openai", "gpt-4o", {}),
        ("anthropic", "claude-sonnet-4-5", tool_mode),
    )
    async with two(*instances) as (mgr, bad, _):
        bad.schedule("bad_output", count=5)
        response = await mgr.generate(GenerationRequest("Extract it", response_format=SCHEMA))
        assert response.success and response.provider == "anthropic" and response.attempts == 2
        assert validate(response.parsed, INVOICE) == []
        assert bad.stats()["faults_injected"] == {"bad_output": 1}


async def test_every_instance_bad_carries_each_raw_answer() -> None:
    async with AsyncExitStack() as stack:
        mgr = await stack.enter_async_context(LlmManager())
        emus = []
        for provider, model in (("openai", "gpt-4o"), ("google", "gemini-2.5-flash"),
                                ("ollama", "llama3.2")):  # fmt: skip
            emu = await stack.enter_async_context(Emulator(provider=provider))
            mgr.add_provider(provider, key(provider), model, base_url=emu.base_url)
            emu.schedule("bad_output", count=5)
            emus.append(emu)
        with pytest.raises(AllAttemptsFailedError) as caught:
            await mgr.generate(
                GenerationRequest("Extract it", response_format=SCHEMA, max_attempts=3)
            )
        attempts = caught.value.attempts
        assert {a.provider for a in attempts} == {"openai", "google", "ollama"}
        for err in attempts:
            assert isinstance(err, StructuredOutputError) and err.raw_text == "[]"
            assert err.errors == ("$: expected object, got an array",)
        # Streamed, the text has reached the caller: no failover, the error itself.
        with pytest.raises(StructuredOutputError) as bad:
            async with mgr.stream(GenerationRequest("Say it", response_format="json")) as stream:
                _ = [chunk async for chunk in stream]
        assert bad.value.raw_text == BAD_OUTPUT_TEXT == bad.value.partial_content


@pytest.mark.parametrize(
    ("weak", "ask"),
    [
        (
            ("cohere", "command-a-nojson"),
            GenerationRequest("Extract it", task="t", response_format=SCHEMA),
        ),
        (
            ("ollama", "llama3.2-novision"),
            GenerationRequest(task="t", messages=[Message.user(["Look", Image.from_bytes(PNG)])]),
        ),
        (
            ("openai", "gpt-4o-notools"),
            GenerationRequest("Weather in Oslo?", task="t", tools=[Tool("get_weather")]),
        ),
    ],
    ids=["nojson", "novision", "notools"],
)
async def test_a_model_that_cannot_is_learned_and_skipped(
    weak: tuple[str, str], ask: GenerationRequest
) -> None:
    provider, model = weak
    instances: tuple[Instance, ...] = (provider, model, {}), ("mistral", "mistral-small-latest", {})
    async with two(*instances, tasks=(TaskDefinition("t"),)) as (mgr, refuses, _):
        first = await mgr.generate(ask)
        assert first.success and first.provider == "mistral" and first.attempts == 2
        assert refuses.stats()["requests"] == 1
        for _ in range(2):  # learned: never asked again, whatever the strategy picks
            again = await mgr.generate(ask)
            assert again.success and again.provider == "mistral" and again.attempts == 1
        assert refuses.stats()["requests"] == 1


async def test_cohere_beside_tools_fails_over_and_keeps_its_capabilities() -> None:
    instances: tuple[Instance, ...] = ("cohere", "command-a", {}), ("openai", "gpt-4o", {})
    async with two(*instances) as (mgr, cohere, _):
        turn = Message.user(["Weather report for Oslo?", Image.from_bytes(PNG)])
        request = GenerationRequest(messages=[turn], response_format=REPORT)
        response = await mgr.run_tools(request, [get_weather])
        assert response.success and response.provider == "openai"
        assert response.attempts > 2  # two steps, and cohere tried (and passed over) first
        assert validate(response.parsed, REPORT.schema) == []
        assert cohere.stats()["requests"] == 0  # refused before sending
        alone = await mgr.generate(GenerationRequest("Extract it", response_format=SCHEMA))
        again = await mgr.generate(GenerationRequest("Extract it", response_format=SCHEMA))
        assert {alone.provider, again.provider} == {"cohere", "openai"}  # not learned away
