"""SyncLlmManager: LlmManager for plain synchronous code.

It runs its own event loop in a background thread, so it works the same in a script and inside
an already-running loop (Jupyter), where ``asyncio.run`` would fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from flyllm._toolloop import ToolFunctions
from flyllm.manager import LlmManager
from flyllm.observe.events import Hook
from flyllm.routing.instance import InstanceHealth, InstanceInfo
from flyllm.routing.strategies import Strategy
from flyllm.streaming import LlmStream
from flyllm.types import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    LlmResponse,
    ProviderType,
    StreamChunk,
    TaskDefinition,
)
from flyllm.usage import InstanceUsage

if TYPE_CHECKING:
    from flyllm.discovery import ModelInfo

__all__ = ["SyncLlmManager", "SyncStream"]

T = TypeVar("T")

_POLL = 0.25  # seconds between checks for a pending Ctrl-C while a call runs


class SyncLlmManager:
    """The LlmManager API without await. Use as a context manager or call ``close()``.

    Takes the same arguments as LlmManager; ``manager`` is the async manager underneath.
    """

    def __init__(
        self, strategy: str | Strategy = "least_recently_used", max_attempts: int = 3, **kwargs: Any
    ) -> None:
        self._start(LlmManager(strategy, max_attempts, **kwargs))

    def _start(self, manager: LlmManager) -> None:
        self.manager = manager
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="flyllm-sync", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this SyncLlmManager is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            while True:
                # A bounded wait, so that a Ctrl-C caught by another thread still reaches
                # this one promptly (an unbounded lock wait is not woken for it).
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    return future.result(_POLL)
        except BaseException:  # Ctrl-C (or any exit) here: the request must not run on
            future.cancel()
            raise

    def add_provider(
        self,
        provider: ProviderType | str,
        api_key: str,
        model: str,
        tasks: Iterable[TaskDefinition | str] = (),
        enabled: bool = True,
        **kwargs: Any,
    ) -> int:
        """See LlmManager.add_provider."""
        return self.manager.add_provider(provider, api_key, model, tasks, enabled, **kwargs)

    def define_task(self, task: TaskDefinition) -> None:
        """See LlmManager.define_task."""
        self.manager.define_task(task)

    def enable_instance(self, instance_id: int) -> None:
        """See LlmManager.enable_instance."""
        self.manager.enable_instance(instance_id)

    def disable_instance(self, instance_id: int) -> None:
        """See LlmManager.disable_instance."""
        self.manager.disable_instance(instance_id)

    def remove_instance(self, instance_id: int) -> None:
        """See LlmManager.remove_instance."""
        self.manager.remove_instance(instance_id)

    def generate(self, request: GenerationRequest) -> LlmResponse:
        """See LlmManager.generate (raises on failure)."""
        return self._call(self.manager.generate(request))

    def try_generate(self, request: GenerationRequest) -> LlmResponse:
        """See LlmManager.try_generate (a failure is a response with ``success=False``)."""
        return self._call(self.manager.try_generate(request))

    def generate_sequentially(self, requests: Iterable[GenerationRequest]) -> list[LlmResponse]:
        """See LlmManager.generate_sequentially."""
        return self._call(self.manager.generate_sequentially(list(requests)))

    def batch_generate(
        self,
        requests: Iterable[GenerationRequest],
        max_concurrency: int | None = None,
        *,
        progress: bool = False,
    ) -> list[LlmResponse]:
        """See LlmManager.batch_generate."""
        batch = list(requests)
        return self._call(self.manager.batch_generate(batch, max_concurrency, progress=progress))

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """See LlmManager.embed (raises on failure)."""
        return self._call(self.manager.embed(request))

    def embed_batch(
        self,
        texts: Iterable[str],
        task: str | None = None,
        batch_size: int | None = None,
        max_concurrency: int = 16,
        **kwargs: Any,
    ) -> list[EmbeddingResult]:
        """See LlmManager.embed_batch (one result per text, never raises for a failure)."""
        batch = list(texts)
        return self._call(
            self.manager.embed_batch(batch, task, batch_size, max_concurrency, **kwargs)
        )

    def run_tools(
        self, request: GenerationRequest, functions: ToolFunctions, *, max_steps: int = 8
    ) -> LlmResponse:
        """See LlmManager.run_tools (async functions run on the manager's background loop,
        plain ones in its threads)."""
        return self._call(self.manager.run_tools(request, functions, max_steps=max_steps))

    def stream(self, request: GenerationRequest) -> SyncStream:
        """See LlmManager.stream: a plain iterator of StreamChunks (close it, or use ``with``,
        to stop early)."""
        return SyncStream(self, self.manager.stream(request))

    def list_models(
        self, provider: ProviderType | str, api_key: str, base_url: str | None = None, **kwargs: Any
    ) -> list[ModelInfo]:
        """See LlmManager.list_models."""
        return self._call(self.manager.list_models(provider, api_key, base_url, **kwargs))

    def add_hook(self, hook: Hook) -> None:
        """See LlmManager.add_hook (hooks run on the background loop's thread)."""
        self.manager.add_hook(hook)

    def remove_hook(self, hook: Hook) -> None:
        """See LlmManager.remove_hook."""
        self.manager.remove_hook(hook)

    def instance_health(self) -> list[InstanceHealth]:
        """See LlmManager.instance_health."""
        return self.manager.instance_health()

    def print_instance_health(self, file: TextIO | None = None) -> None:
        """See LlmManager.print_instance_health."""
        self.manager.print_instance_health(file)

    def usage_report(self) -> dict[str, Any]:
        """See LlmManager.usage_report."""
        return self.manager.usage_report()

    def response_cost(self, response: LlmResponse) -> float | None:
        """See LlmManager.response_cost."""
        return self.manager.response_cost(response)

    def usage_report_json(self, indent: int | None = 2) -> str:
        """See LlmManager.usage_report_json."""
        return self.manager.usage_report_json(indent)

    def token_usage(self) -> list[InstanceUsage]:
        """See LlmManager.token_usage."""
        return self.manager.token_usage()

    def print_token_usage(self, file: TextIO | None = None) -> None:
        """See LlmManager.print_token_usage."""
        self.manager.print_token_usage(file)

    def instances(self) -> list[InstanceInfo]:
        """See LlmManager.instances."""
        return self.manager.instances()

    @property
    def tasks(self) -> Mapping[str, TaskDefinition]:
        """See LlmManager.tasks."""
        return self.manager.tasks

    @classmethod
    def from_config(cls, path: str | os.PathLike[str]) -> SyncLlmManager:
        """See LlmManager.from_config: the same file, a SyncLlmManager."""
        from flyllm.config.loader import load_config

        return cls._around(load_config(path))

    @classmethod
    def _around(cls, manager: LlmManager) -> SyncLlmManager:
        """A SyncLlmManager driving an LlmManager built elsewhere (a config file, a builder)."""
        sync = cls.__new__(cls)
        sync._start(manager)
        return sync

    def close(self) -> None:
        """Close the connections and stop the background loop. Safe to call twice."""
        if self._closed:
            return
        self._call(self.manager.aclose())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncLlmManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)


class SyncStream:
    """A stream for synchronous code: iterate it for StreamChunks; ``response`` once ended."""

    def __init__(self, owner: SyncLlmManager, stream: LlmStream) -> None:
        self._owner = owner
        self._stream = stream

    @property
    def response(self) -> LlmResponse:
        """See LlmStream.response."""
        return self._stream.response

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        try:
            return self._owner._call(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Close the connection now."""
        self._owner._call(self._stream.aclose())

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
