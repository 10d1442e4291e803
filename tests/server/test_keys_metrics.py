"""``GET /metrics``: the library's series and per-key counters, labelled by key name only."""

from __future__ import annotations

import contextlib
import sys
from typing import Any
from unittest import mock

import aiohttp
import openai
import pytest
from aiohttp.test_utils import make_mocked_request
from openai.types.chat import ChatCompletionMessageParam

from flyllm import LlmManager
from flyllm.emulator.faults import Fault
from flyllm.pricing import ModelPrice
from flyllm.server import Gateway, GatewaySettings, KeyRing, VirtualKey, hash_key, new_key
from tests.server.conftest import GatewayFactory

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def scrape(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics",
                                                              headers=headers) as r:  # fmt: skip
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_metrics_count_each_keys_requests_tokens_spend_and_rejections(
    gateway: GatewayFactory,
) -> None:
    plain, limited = new_key(), new_key()
    ring = KeyRing([
        VirtualKey(name="team-a", sha256=hash_key(plain)),
        VirtualKey(name="team-b", sha256=hash_key(limited), rpm=1, budget_usd=1000.0),
    ])  # fmt: skip
    price = {"openai-model": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)}
    served = await gateway("openai", settings=GatewaySettings(keys=ring), prices=price)
    for key, count in ((plain, 2), (limited, 2)):
        async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key,
                                      max_retries=0) as sdk:  # fmt: skip
            for _ in range(count):
                with contextlib.suppress(openai.RateLimitError):
                    await sdk.chat.completions.create(model="chat", messages=HI)
            with pytest.raises(openai.NotFoundError):
                await sdk.chat.completions.create(model="nope", messages=HI)
    status, content_type, text = await scrape(served.url)
    assert status == 200 and content_type.startswith("text/plain")
    lines = set(text.splitlines())
    assert 'flyllm_gateway_key_requests_total{key="team-a",outcome="ok"} 2.0' in lines
    assert 'flyllm_gateway_key_requests_total{key="team-a",outcome="not_found"} 1.0' in lines
    assert 'flyllm_gateway_key_requests_total{key="team-b",outcome="ok"} 1.0' in lines
    assert 'flyllm_gateway_key_requests_total{key="team-b",outcome="rate_limit"} 1.0' in lines
    assert 'flyllm_gateway_key_rejections_total{key="team-b",reason="rpm"} 1.0' in lines
    assert any(line.startswith('flyllm_gateway_key_tokens_total{key="team-a",type="completion"}')
               and float(line.split()[-1]) > 0 for line in lines)  # fmt: skip
    spend = [ln for ln in lines if ln.startswith('flyllm_gateway_key_spend_usd_total{key="team-b"')]
    assert spend and float(spend[0].split()[-1]) > 0
    assert any(line.startswith("flyllm_requests_total{") for line in lines)  # the library's
    for secret in (plain, limited, hash_key(plain), hash_key(limited)):
        assert secret not in text


async def test_expired_keys_are_counted_as_rejections(gateway: GatewayFactory) -> None:
    import datetime as dt

    key = new_key()
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    ring = KeyRing([VirtualKey(name="old", sha256=hash_key(key), expires=past)])
    served = await gateway("openai", settings=GatewaySettings(keys=ring))
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model="chat", messages=HI)
    _, _, text = await scrape(served.url)
    assert 'flyllm_gateway_key_rejections_total{key="old",reason="expired"} 1.0' in text
    assert key not in text and hash_key(key) not in text


def _mocked(gw: Gateway, peer: str, **headers: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 4321) if name == "peername" else default
    )
    return make_mocked_request("GET", "/metrics", headers=headers, transport=transport)


async def test_metrics_from_another_machine_need_a_key_when_the_gateway_has_keys() -> None:
    key = new_key()
    ring = KeyRing([VirtualKey(name="ops", sha256=hash_key(key))])
    async with LlmManager() as manager:
        gw = Gateway(manager, GatewaySettings(keys=ring))
        assert (await gw.metrics_text(_mocked(gw, "10.1.2.3"))).status == 401
        wrong = _mocked(gw, "10.1.2.3", Authorization="Bearer " + new_key())
        assert (await gw.metrics_text(wrong)).status == 401
        right = _mocked(gw, "10.1.2.3", Authorization="Bearer " + key)
        assert (await gw.metrics_text(right)).status == 200
        assert (await gw.metrics_text(_mocked(gw, "127.0.0.1"))).status == 200
        assert (await gw.metrics_text(_mocked(gw, "::1"))).status == 200
        open_gw = Gateway(manager, GatewaySettings())  # no keys: loopback only, open
        assert (await open_gw.metrics_text(_mocked(open_gw, "10.1.2.3"))).status == 200


async def test_without_prometheus_client_metrics_answer_501_naming_the_extra(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    served = await gateway("openai")
    assert served.gateway.metrics is None
    status, _, text = await scrape(served.url)
    assert status == 501 and "flyllm[serve]" in text
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="x") as sdk:
        await sdk.chat.completions.create(model="chat", messages=HI)


async def test_a_stream_failing_after_its_first_chunk_is_counted_as_failed(
    gateway: GatewayFactory,
) -> None:
    key = new_key()
    ring = KeyRing([VirtualKey(name="streamer", sha256=hash_key(key), max_concurrent=1)])
    served = await gateway("openai", settings=GatewaySettings(keys=ring), max_attempts=1)
    served.emulators["openai"].set_faults([Fault("stream_error", after_chunks=1)])
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="chat", messages=HI, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        served.emulators["openai"].set_faults([])
        await sdk.chat.completions.create(model="chat", messages=HI)  # the slot was freed
    _, _, text = await scrape(served.url)
    lines = text.splitlines()
    assert 'flyllm_gateway_key_requests_total{key="streamer",outcome="ok"} 1.0' in lines
    series = 'flyllm_gateway_key_requests_total{key="streamer"'
    failed = [ln for ln in lines if ln.startswith(series) and 'outcome="ok"' not in ln]
    assert len(failed) == 1 and failed[0].endswith(" 1.0")
