"""Requests packed to the instances' current tpm headroom: one that fits what the window still
takes goes now (not a full-size one waiting a minute for the whole window), and a window with
little room left gets a full-size request that waits for it, not a trickle of tiny ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from flyllm import LlmManager, TaskDefinition
from flyllm._embed import TALLY_SPAN, Tally
from flyllm.emulator import Emulator
from tests.integration.conftest import VirtualTime

KEY = "-".join(["sk", "embed", "pack", "31"])


@asynccontextmanager
async def limited(
    rpm: int | None = None,
) -> AsyncIterator[tuple[LlmManager, Emulator, VirtualTime]]:
    """A manager whose waits pass at once, with one instance limited to 100 tpm."""
    virtual = VirtualTime()
    async with (
        Emulator(provider="openai") as emu,
        LlmManager(clock=virtual.clock, sleep=virtual.sleep) as manager,
    ):
        manager.add_provider(
            "openai", KEY, "text-embedding-3-small", [TaskDefinition("embed")],
            base_url=emu.base_url, tpm=100, rpm=rpm,
        )  # fmt: skip
        yield manager, emu, virtual


def sizes_sent(emu: Emulator) -> list[int]:
    return [len(r.json["input"]) for r in emu.requests if r.json]


def words(n: int) -> str:
    """A text whose estimate (characters / 4 + 1) is its word count, which the emulator bills."""
    return " ".join(["abc"] * n)


@pytest.mark.parametrize(
    ("used", "rpm", "each", "sizes", "waits"),
    [
        (60, None, 10, [1, 4, 4], 1),  # 40 of 100 free: 4 texts now, 4 after the window
        (95, None, 10, [1, 8], 1),  # 5 free, under an eighth of 100: a full request, waiting
        (60, 2, 10, [1, 8], 1),  # 40 free but rpm 2 makes requests under tpm / rpm a waste
        (85, None, 20, [1, 4], 1),  # 15 free cannot hold the next text of 20: a full request
        (0, None, 10, [1, 8], 0),  # room for all: one request
    ],
)
async def test_requests_are_sized_to_the_tpm_headroom_now(
    used: int, rpm: int | None, each: int, sizes: list[int], waits: int
) -> None:
    async with limited(rpm) as (manager, emu, virtual):
        first = await manager.embed_batch([words(max(used, 1))], "embed")
        assert first[0].usage.total_tokens == max(used, 1)  # the window holds what was billed
        count = 80 // each
        results = await manager.embed_batch([words(each)] * count, "embed", max_concurrency=1)
    assert all(r.success for r in results)
    assert sizes_sent(emu) == sizes
    assert len(virtual.sleeps) == waits


async def test_requests_are_booked_at_what_the_provider_bills() -> None:
    # 36 characters estimate at 10 tokens; the emulator bills 1 word. After the first answer
    # the bookings are scaled down (by at most 4), so every request is full and none waits.
    async with limited() as (manager, emu, virtual):
        results = await manager.embed_batch(["x" * 36] * 30, "embed", max_concurrency=1)
    assert all(r.success for r in results)
    assert sizes_sent(emu) == [10, 10, 10]
    assert virtual.sleeps == []


async def test_the_billed_ratio_carries_over_to_the_next_call_of_the_task() -> None:
    # What `flyllm embed` does: one embed_batch per group of texts. The second call books its
    # first request at what the first call was billed, so it too sends full requests at once.
    async with limited() as (manager, emu, virtual):
        for _ in range(3):
            await manager.embed_batch(["x" * 36] * 10, "embed", max_concurrency=1)
    assert sizes_sent(emu) == [10, 10, 10]
    assert virtual.sleeps == []


def test_the_tally_clamps_its_ratio_and_forgets_old_counts() -> None:
    tally = Tally()
    assert tally.ratio() == 1.0  # nothing answered yet
    tally.add(1000, 10)
    assert tally.ratio() == 0.25  # a bill 100 times under the estimate: booked at a quarter
    tally.add(TALLY_SPAN, 8 * TALLY_SPAN)
    assert tally.ratio() == 4.0
    assert tally.estimated <= TALLY_SPAN  # halved: the recent counts weigh most
    for _ in range(30):
        tally.add(TALLY_SPAN // 4, TALLY_SPAN // 8)
    assert abs(tally.ratio() - 0.5) < 0.01
