"""PrometheusMetrics counts in plain tables and exports them when scraped: the series, the
latency histogram's cumulative buckets, and the registry's duplicate check are as before."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from flyllm.observe.events import Event
from flyllm.observe.metrics import PrometheusMetrics
from flyllm.types import Usage

INSTANCE = {"instance": "a", "provider": "openai", "model": "m", "task": "t", "stream": "false"}


def end(latency: float, **more: object) -> Event:
    return Event(kind="attempt_end", request_id=1, time=0.0, task="t", attempt=1, instance_id=0,
                 instance_name="a", provider="openai", model="m", latency=latency, **more)  # type: ignore[arg-type]  # fmt: skip


def test_counts_and_the_latency_histogram() -> None:
    registry = CollectorRegistry()
    hook = PrometheusMetrics(registry=registry)
    hook(end(0.07, success=True, usage=Usage(5, 2, 7), health="closed"))
    hook(end(0.3, success=False, error_kind="server", health="open"))
    hook(end(500.0, success=True))
    hook(Event(kind="request_end", request_id=1, time=0.0, task="t", success=True))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("flyllm_attempts_total", **INSTANCE, outcome="success") == 2
    assert value("flyllm_errors_total", **INSTANCE, kind="server") == 1
    assert value("flyllm_tokens_total", **INSTANCE, type="prompt") == 5
    assert value("flyllm_requests_total", task="t", stream="false", outcome="success") == 1
    assert value("flyllm_attempt_latency_seconds_bucket", **INSTANCE, le="0.05") == 0
    assert value("flyllm_attempt_latency_seconds_bucket", **INSTANCE, le="0.1") == 1
    assert value("flyllm_attempt_latency_seconds_bucket", **INSTANCE, le="0.5") == 2
    assert value("flyllm_attempt_latency_seconds_bucket", **INSTANCE, le="120.0") == 2
    assert value("flyllm_attempt_latency_seconds_bucket", **INSTANCE, le="+Inf") == 3
    assert value("flyllm_attempt_latency_seconds_count", **INSTANCE) == 3
    assert value("flyllm_attempt_latency_seconds_sum", **INSTANCE) == pytest.approx(500.37)
    assert value("flyllm_instance_health", instance="a", provider="openai", model="m") == 0.0


def test_a_second_hook_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry=registry)
