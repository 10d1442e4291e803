"""Scenario 6: the cost of flyllm's routing itself as instances grow (flyllm only).

Design. The selection of one request is everything the manager does before it builds the
HTTP request: resolve and validate the request and its task (``LlmManager._plan``), filter the
task's candidates (enabled, untried, circuit closed, within rate limits) and let the strategy
order them, then book the pick (the first ``AttemptLoop.next()``); the booking is released
after each selection (``abandoned``), so every selection meets the same state. It is timed in
process, with no I/O, by calling exactly that code: the manager's own methods, not a copy of
them. The coroutine never suspends on a first attempt (only waits for capacity or a retry
round do), so it is driven with ``send(None)``, without an event loop in the way. Each figure
is the fastest of five runs of enough selections to last 50 ms (``selection_run_ms``), in
nanoseconds per request.

Managers of 10, 100 and 1,000 instances over 50 tasks, in three layouts:

    fixed     the requested task always has the same 4 candidates; the other instances serve
              the other 49 tasks. Flat here means no work proportional to *all* instances on
              any request: the verdict (1,000 vs 10 instances within 1.5x).
    spread    instance i serves task i mod 50 (with fewer than 50 instances each serves
              several), requests cycle over the 50 tasks: a task has max(1, N/50) candidates,
              so the cost may grow with the task's own candidates (the strategy sorts them),
              never with the total.
    untasked  requests without a task: every instance is a candidate, so this one is linear in
              N by definition (shown for reference; LiteLLM's model groups are the same).

End to end, the same spread managers with their instances pointed at the 4 emulated
instances answer a real batch, and the client CPU per request is reported for each size.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Sequence
from typing import Any

from bench.core import settle
from bench.wire import Target
from flyllm import GenerationRequest, LlmManager, TaskDefinition
from flyllm.errors import FlyLLMError
from flyllm.routing.attempts import Attempt, AttemptLoop
from flyllm.routing.instance import LlmInstance

__all__ = ["LAYOUTS", "build_manager", "measure_selection"]

LAYOUTS = ("fixed", "spread", "untasked")
HOT_CANDIDATES = 4


def _tasks_of(i: int, n: int, tasks: int, layout: str) -> list[str]:
    """The task names instance ``i`` of ``n`` serves in ``layout``."""
    if layout == "fixed":
        if i < HOT_CANDIDATES:
            return ["task0"]
        return [f"task{1 + i % (tasks - 1)}"]
    served = {i % tasks} | {t for t in range(tasks) if t % n == i}
    return [f"task{t}" for t in sorted(served)]


def build_manager(
    n: int, layout: str, strategy: str, urls: Sequence[str], tasks: int = 50
) -> LlmManager:
    """A manager of ``n`` OpenAI instances over ``tasks`` tasks, pointed at ``urls`` in turn."""
    manager = LlmManager(strategy=strategy)
    for t in range(tasks):
        manager.define_task(TaskDefinition(f"task{t}", {"max_tokens": 64}))
    for i in range(n):
        manager.add_provider(
            "openai",
            "bench",
            "gpt-4o-mini",
            _tasks_of(i, n, tasks, layout),
            base_url=urls[i % len(urls)],
        )
    return manager


def _requests(layout: str, tasks: int) -> list[GenerationRequest]:
    if layout == "fixed":
        return [GenerationRequest(prompt="p", task="task0")]
    if layout == "untasked":
        return [GenerationRequest(prompt="p")]
    return [GenerationRequest(prompt="p", task=f"task{t}") for t in range(tasks)]


def select(manager: LlmManager, request: GenerationRequest) -> LlmInstance:
    """One selection, exactly as a first attempt makes it (see the module docstring), then
    the booking released so that every selection meets the same state."""
    plan = manager._plan(request)
    loop = AttemptLoop(manager._engine, plan)
    coro: Coroutine[Any, Any, Attempt | FlyLLMError] = loop.next()
    try:
        coro.send(None)
    except StopIteration as stop:
        attempt: Attempt | FlyLLMError = stop.value
        if isinstance(attempt, FlyLLMError):
            raise attempt from None
        loop.abandoned(attempt)
        return attempt.instance
    coro.close()
    raise RuntimeError("a first selection waited: the manager is not in its first round")


def _time_per_selection(
    manager: LlmManager, requests: list[GenerationRequest], run_ms: float
) -> float:
    """Nanoseconds per selection: the fastest of 5 runs of enough selections for ``run_ms``."""
    reps = 16
    while True:
        t0 = time.perf_counter_ns()
        for k in range(reps):
            select(manager, requests[k % len(requests)])
        elapsed = time.perf_counter_ns() - t0
        if elapsed >= run_ms * 1e6 or reps >= 1 << 20:
            break
        reps *= 2
    best = elapsed
    for _ in range(4):
        t0 = time.perf_counter_ns()
        for k in range(reps):
            select(manager, requests[k % len(requests)])
        best = min(best, time.perf_counter_ns() - t0)
    return best / reps


async def _end_to_end(n: int, job: dict[str, Any], urls: list[str]) -> float:
    """Client CPU ms per real request, a spread manager of ``n`` instances."""
    tasks, count = int(job["tasks"]), int(job["e2e_requests"])
    manager = build_manager(n, "spread", job["strategy"], urls, tasks)

    def batch(start: int, k: int) -> list[GenerationRequest]:
        return [GenerationRequest(f"prompt {i}", task=f"task{i % tasks}") for i in range(start, k)]

    try:
        await manager.batch_generate(batch(0, count // 5), max_concurrency=64)
        await settle()
        cpu0 = time.process_time()
        responses = await manager.batch_generate(batch(0, count), max_concurrency=64)
        cpu = time.process_time() - cpu0
    finally:
        await manager.aclose()
    failed = [r for r in responses if not r.success]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed: {failed[0].error}")
    return 1000 * cpu / count


async def measure_selection(job: dict[str, Any]) -> dict[str, Any]:
    """Selection ns per request by layout and size, and end-to-end CPU per request by size."""
    sizes, tasks = [int(s) for s in job["sizes"]], int(job["tasks"])
    urls = [Target.from_json(t).base_url for t in job["targets"]]
    layouts: dict[str, dict[str, float]] = {}
    for layout in LAYOUTS:
        figures: dict[str, float] = {}
        for n in sizes:
            manager = build_manager(n, layout, job["strategy"], urls, tasks)
            requests = _requests(layout, tasks)
            figures[str(n)] = _time_per_selection(manager, requests, float(job["run_ms"]))
        figures["growth"] = figures[str(sizes[-1])] / figures[str(sizes[0])]
        layouts[layout] = figures
    e2e = {str(n): await _end_to_end(n, job, urls) for n in sizes}
    e2e["growth"] = e2e[str(sizes[-1])] / e2e[str(sizes[0])]
    return {
        "strategy": job["strategy"],
        "tasks": tasks,
        "sizes": sizes,
        "selection_ns": layouts,
        "e2e_cpu_ms_per_request": e2e,
    }
