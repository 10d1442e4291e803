"""``flyllm demo``: the library at work against the built-in emulator, no API keys needed.

Four emulated providers on loopback with realistic latency and a few injected faults, five
instances with tasks like the original FlyLLM's example, a mixed batch in parallel, failovers
shown as they happen, the usage table, then a tool-calling conversation (demo_tools).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from flyllm.cli.demo_tools import tool_conversation
from flyllm.emulator import Emulator
from flyllm.manager import LlmManager
from flyllm.types import GenerationRequest, LlmResponse, TaskDefinition

__all__ = ["add", "run", "run_demo"]

TASKS = [
    TaskDefinition("summary", {"max_tokens": 60, "temperature": 0.3}),
    TaskDefinition("creative_writing", {"max_tokens": 120, "temperature": 0.9}),
    TaskDefinition("code_generation", {"max_tokens": 200, "temperature": 0.1}),
    TaskDefinition("translation", {"max_tokens": 80, "temperature": 0.2}),
    TaskDefinition("qa", {"max_tokens": 40}),
]

PROMPTS = [
    ("summary", "Summarize the plot of Hamlet in two sentences."),
    ("creative_writing", "Write a haiku about load balancers."),
    ("code_generation", "Write a Python function that merges two sorted lists."),
    ("translation", "Translate 'the request failed over to another provider' into French."),
    ("qa", "Why do APIs answer 429?"),
]


class _FailoverPrinter(logging.Handler):
    """Shows the manager's failover warnings as they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"  ↪ {record.getMessage()}", file=sys.stderr, flush=True)


async def _demo(n_requests: int) -> int:
    async with AsyncExitStack() as stack:
        openai = await stack.enter_async_context(
            Emulator(provider="openai", latency_ms=40, jitter_ms=20, seed=1)
        )
        anthropic = await stack.enter_async_context(
            Emulator(provider="anthropic", latency_ms=60, jitter_ms=30, seed=2)
        )
        google = await stack.enter_async_context(
            Emulator(provider="google", latency_ms=50, jitter_ms=20, seed=3)
        )
        mistral = await stack.enter_async_context(
            Emulator(provider="mistral", latency_ms=45, jitter_ms=20, seed=4)
        )
        # A bad hour at two providers: Anthropic overloaded twice, OpenAI rate-limited once.
        anthropic.schedule("overloaded", count=2)
        openai.schedule("rate_limit", count=1)
        print("Emulated providers on loopback:")
        for emu in (openai, anthropic, google, mistral):
            print(f"  {emu.provider:<10} {emu.base_url}")

        manager = await stack.enter_async_context(LlmManager(max_attempts=3))
        summary, creative, code, translation, qa = TASKS
        add = manager.add_provider
        add(
            "openai",
            "demo-key-1",
            "gpt-4o-mini",
            [summary, qa, translation],
            base_url=openai.base_url,
        )
        add(
            "anthropic",
            "demo-key-2",
            "claude-sonnet-4-5",
            [summary, creative, code],
            base_url=anthropic.base_url,
        )
        add(
            "google",
            "demo-key-3",
            "gemini-2.5-flash",
            [summary, translation, qa],
            base_url=google.base_url,
        )
        add(
            "mistral",
            "demo-key-4",
            "mistral-small-latest",
            [creative, code, qa],
            base_url=mistral.base_url,
        )
        add("openai", "demo-key-5", "gpt-4o", [code, summary], base_url=openai.base_url)

        print(f"\n{len(manager.instances())} instances:")
        for inst in manager.instances():
            print(f"  #{inst.id} {inst.name:<34} tasks: {', '.join(sorted(inst.tasks))}")

        requests = [
            GenerationRequest(
                prompt=f"{PROMPTS[i % len(PROMPTS)][1]} (#{i})", task=PROMPTS[i % len(PROMPTS)][0]
            )
            for i in range(n_requests)
        ]
        print(f"\nRunning a batch of {len(requests)} mixed requests, 8 at a time...")
        started = time.perf_counter()
        responses = await manager.batch_generate(requests, max_concurrency=8)
        elapsed = time.perf_counter() - started
        _print_results(requests, responses)
        ok = sum(r.success for r in responses)
        print(f"\n{ok}/{len(responses)} succeeded in {elapsed:.2f} s")
        await _stream_one(manager)
        print()
        manager.print_token_usage()
        print()
        manager.print_instance_health()
        emulators = {"openai": openai, "anthropic": anthropic, "google": google}
        tools_ok = await tool_conversation(emulators | {"mistral": mistral})
        return 0 if ok == len(responses) and tools_ok else 1


async def _stream_one(manager: LlmManager) -> None:
    """Stream one answer chunk by chunk, as it arrives."""
    request = GenerationRequest(
        prompt="Write a short poem about failover.", task="creative_writing"
    )
    print("\nStreaming one creative_writing answer:\n  ", end="", flush=True)
    async with manager.stream(request) as stream:
        async for chunk in stream:
            print(chunk.text, end="", flush=True)
    final = stream.response
    print(f"\n  ({final.provider}/{final.model}, {final.usage.completion_tokens} tokens, "
          f"finish: {final.finish_reason})")  # fmt: skip


def _print_results(requests: list[GenerationRequest], responses: list[LlmResponse]) -> None:
    print()
    for req, resp in zip(requests, responses, strict=True):
        if resp.success:
            excerpt = resp.content if len(resp.content) <= 48 else resp.content[:45] + "..."
            retried = f" after {resp.attempts} attempts" if resp.attempts > 1 else ""
            print(
                f"  [{req.task:<16}] #{resp.instance_id} {resp.provider}/{resp.model}"
                f"{retried}: {excerpt}"
            )
        else:
            print(f"  [{req.task:<16}] FAILED ({resp.error_kind}): {resp.error}")


def run_demo(n_requests: int = 15) -> int:
    """Run the demo; returns the exit code (0 when every request succeeded)."""
    logger = logging.getLogger("flyllm")
    handler = _FailoverPrinter(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        return asyncio.run(_demo(n_requests))
    finally:
        logger.removeHandler(handler)


def add(commands: Any) -> None:
    """Add the ``demo`` sub-parser."""
    demo = commands.add_parser(
        "demo",
        help="run the demo against the built-in emulator (no API keys needed)",
        description="Start emulated OpenAI, Anthropic, Google and Mistral endpoints on loopback, "
        "run a mixed batch over five instances with injected faults, print the usage table, "
        "then one tool-calling conversation whose steps land on different providers.",
    )
    demo.add_argument("--requests", type=int, default=15, help="batch size (default 15)")


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm demo``; the exit code."""
    return run_demo(n_requests=args.requests)
