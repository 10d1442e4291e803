"""Requests packed to the instances' current tpm headroom: one that fits what the window still
takes goes now (not a full-size one waiting a minute for the whole window), and a window with
little room left gets a full-size request that waits for it, not a trickle of tiny ones."""

from __future__ import annotations

import pytest

from flyllm import LlmManager, TaskDefinition
from flyllm.emulator import Emulator
from tests.integration.conftest import VirtualTime

KEY = "-".join(["sk", "embed", "pack", "31"])


def words(n: int) -> str:
    """A text whose estimate (characters / 4 + 1) is its word count, which the emulator bills."""
    return " ".join(["abc"] * n)


@pytest.mark.parametrize(
    ("used", "rpm", "sizes", "waits"),
    [
        (60, None, [1, 4, 4], 1),  # 40 of 100 free: 4 texts now, the other 4 after the window
        (95, None, [1, 8], 1),  # 5 free, under a quarter of 100: a full request, which waits
        (60, 2, [1, 8], 1),  # 40 free but rpm 2 makes requests under tpm / rpm = 50 a waste
        (0, None, [1, 8], 0),  # room for all: one request
    ],
)
async def test_requests_are_sized_to_the_tpm_headroom_now(
    used: int, rpm: int | None, sizes: list[int], waits: int
) -> None:
    virtual = VirtualTime()
    async with (
        Emulator(provider="openai") as emu,
        LlmManager(clock=virtual.clock, sleep=virtual.sleep) as manager,
    ):
        manager.add_provider(
            "openai", KEY, "text-embedding-3-small", [TaskDefinition("embed")],
            base_url=emu.base_url, tpm=100, rpm=rpm,
        )  # fmt: skip
        first = await manager.embed_batch([words(max(used, 1))], "embed")
        assert first[0].usage.total_tokens == max(used, 1)  # the window holds what was billed
        results = await manager.embed_batch([words(10)] * 8, "embed", max_concurrency=1)
    assert all(r.success for r in results)
    assert [len(r.json["input"]) for r in emu.requests if r.json] == sizes
    assert len(virtual.sleeps) == waits
