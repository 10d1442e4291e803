"""Fixtures for the gateway: the emulator upstream, a manager over it and ``flyllm serve``'s
application on a loopback port, all in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from flyllm import LlmManager, TaskDefinition
from flyllm.emulator import Emulator
from flyllm.server import Gateway, GatewaySettings


@dataclass
class Served:
    """A running gateway: its root URL (``url + "/v1"`` for the OpenAI SDK), its manager and
    the emulators behind it (``emulators[provider]``)."""

    url: str
    manager: LlmManager
    gateway: Gateway
    emulators: dict[str, Emulator]


GatewayFactory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayFactory]:
    """``await gateway("openai", "anthropic", settings=..., task="chat")``: one emulator and
    one instance per provider, all serving ``task``; everything stops at the end of the test."""
    async with AsyncExitStack() as stack:

        async def start(
            *providers: str,
            settings: GatewaySettings | None = None,
            task: str = "chat",
            emulator_options: dict[str, Any] | None = None,
            **manager_options: Any,
        ) -> Served:
            manager = LlmManager(**manager_options)
            manager.define_task(TaskDefinition(task))
            stack.push_async_callback(manager.aclose)
            emus: dict[str, Emulator] = {}
            for provider in providers or ("openai",):
                emu = await stack.enter_async_context(
                    Emulator(provider=provider, **(emulator_options or {}))
                )
                emus[provider] = emu
                manager.add_provider(provider, "k", f"{provider}-model", [task],
                                     base_url=emu.base_url)  # fmt: skip
            gw = Gateway(manager, settings)
            runner = web.AppRunner(gw.application(), handler_cancellation=True)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            return Served(f"http://127.0.0.1:{port}", manager, gw, emus)

        yield start
