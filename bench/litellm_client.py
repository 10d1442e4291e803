"""LiteLLM's Router as a contender, configured like flyllm: the same deployments, a random pick
(``simple-shuffle``, its default) and the same attempts per request.

LiteLLM is a bench-only extra (``pip install 'flyllm[bench]'``), never a runtime dependency;
this module is imported only when the litellm contender runs. It is made quiet and offline:
the bundled model cost map and catalogs (``LITELLM_LOCAL_MODEL_COST_MAP``,
``LITELLM_OFFLINE_MODE``, set by :func:`bench.core.child_env` and again here), no telemetry,
no debug banners; the child's loopback guard (:mod:`bench.run_one`) refuses, and counts, any
connection beyond loopback, so nothing can hang on the network.

Deployments, one per emulated instance (how LiteLLM builds each URL from ``api_base``, read in
its source): ``openai/...`` posts to ``{api_base}/chat/completions`` (api_base ``.../v1``);
``anthropic/...`` to ``{api_base}/v1/messages`` (the root); ``gemini/...`` to
``{api_base}/models/{model}:generateContent`` (so the root + ``/v1beta``, the version it uses
for non-3.x models); ``mistral/...`` to ``{api_base}/chat/completions`` (the root + ``/v1``).

Retries: ``num_retries = max_attempts - 1`` (3 attempts in all, as flyllm's max_attempts=3;
checked against the emulator's request counts: LiteLLM adds no SDK-level retry of its own).
Its waits before a retry are short when another deployment is healthy (none) and otherwise
honour retry-after or back off from 0.5 s, as flyllm does; its deployment cooldowns (3 allowed
failures a minute, then 5 s out) are left at their defaults: they are how LiteLLM users run it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from bench.contenders import Options
from bench.core import QUIET_ENV, BatchResult, StreamResult, run_pool
from bench.wire import API_KEY, TOOL, Target, tool_prompt

__all__ = ["LiteLLMClient", "deployment", "router_settings"]

_PREFIX = {"openai": "openai", "anthropic": "anthropic", "google": "gemini", "mistral": "mistral"}


def _quiet_litellm() -> Any:
    """Import litellm offline and silent (the module, typed loosely: it is optional)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    litellm: Any = importlib.import_module("litellm")
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def deployment(target: Target) -> dict[str, Any]:
    """The ``model_list`` entry for one emulated instance (see the module docstring)."""
    api_base = {
        "openai": target.base_url,
        "anthropic": target.root,
        "google": target.root + "/v1beta",
        "mistral": target.root + "/v1",
    }[target.provider]
    return {
        "model_name": "bench",
        "litellm_params": {
            "model": f"{_PREFIX[target.provider]}/{target.model}",
            "api_base": api_base,
            "api_key": API_KEY,
        },
    }


def router_settings(options: Options) -> dict[str, Any]:
    """The Router's keyword arguments besides the model list (recorded in the results)."""
    return {"routing_strategy": "simple-shuffle", "num_retries": options.max_attempts - 1}


class LiteLLMClient:
    """``router.acompletion`` per request under the shared concurrency bound."""

    name = "litellm"

    def __init__(self, targets: Sequence[Target], options: Options) -> None:
        litellm = _quiet_litellm()
        self._options = options
        self.router = litellm.Router(
            model_list=[deployment(t) for t in targets], **router_settings(options)
        )

    def _messages(self, n: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"prompt {n}"}]

    async def batch(self, start: int, count: int, concurrency: int) -> BatchResult:
        """``await router.acompletion(model="bench", ...)``; any exception is a failure. The
        responses are kept until the batch ends, as ``asyncio.gather`` would keep them."""
        router, out, max_tokens = self.router, BatchResult(), self._options.max_tokens
        answers: list[Any] = [None] * count
        tools = self._options.tools
        extra: dict[str, Any] = {}
        if tools:
            extra = {"tools": [{"type": "function", "function": TOOL}], "tool_choice": "required"}

        async def one(i: int) -> None:
            t0 = time.perf_counter()
            n = start + i
            messages = [{"role": "user", "content": tool_prompt(n)}] if tools else self._messages(n)
            try:
                response = await router.acompletion(
                    model="bench", messages=messages, max_tokens=max_tokens, **extra
                )
            except Exception:
                out.failures += 1
                return
            message = response.choices[0].message
            if tools:
                calls = message.tool_calls or []
                if not calls:
                    out.failures += 1
                    return
                _ = [(c.function.name, json.loads(c.function.arguments)) for c in calls]
            else:
                _ = message.content
            answers[i] = response
            out.latencies.append(time.perf_counter() - t0)
            out.successes += 1

        await run_pool(count, concurrency, one)
        return out

    async def streams(self, start: int, count: int, concurrency: int) -> StreamResult:
        """``acompletion(..., stream=True)`` and every chunk's ``delta.content``."""
        router, out, max_tokens = self.router, StreamResult(), self._options.max_tokens

        async def one(i: int) -> None:
            t0 = time.perf_counter()
            first: float | None = None
            try:
                response = await router.acompletion(
                    model="bench",
                    messages=self._messages(start + i),
                    max_tokens=max_tokens,
                    stream=True,
                )
                async for chunk in response:
                    choices = chunk.choices
                    if choices and choices[0].delta.content:
                        out.chunks += 1
                        if first is None:
                            first = time.perf_counter() - t0
            except Exception:
                out.failures += 1
                return
            if first is not None:
                out.ttfc.append(first)
            out.successes += 1

        await run_pool(count, concurrency, one)
        return out

    async def aclose(self) -> None:
        """LiteLLM keeps its clients in a process-wide cache; the child process exit frees them."""
