"""Prometheus metrics for flyllm, as a hook (the optional extra ``flyllm[metrics]``).

    from prometheus_client import start_http_server
    from flyllm.observe.metrics import PrometheusMetrics

    manager.add_hook(PrometheusMetrics())   # default registry; or PrometheusMetrics(registry=r)
    start_http_server(9100)

Series (labels: instance name, provider, model, task; ``stream`` says whether it was streamed):
requests and their outcome, attempts, tokens by type, errors by kind, retries (attempts after the
first), failovers (an attempt on another instance after a failure), rate-limit and backoff waits
and their seconds, attempt latency as a histogram, and a per-instance health gauge set after
every attempt (1 closed, 0.5 half-open, 0 open).
"""

from __future__ import annotations

from typing import Any

from flyllm.observe.events import Event

__all__ = ["PrometheusMetrics"]

_HEALTH = {"closed": 1.0, "half_open": 0.5, "open": 0.0}
_INSTANCE = ("instance", "provider", "model", "task", "stream")


class PrometheusMetrics:
    """A hook that records flyllm's events as Prometheus series in ``registry``."""

    def __init__(self, registry: Any = None, namespace: str = "flyllm") -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        opts: dict[str, Any] = {"namespace": namespace, "registry": reg}
        task_stream = ["task", "stream"]
        self.requests = Counter("requests", "Requests answered", [*task_stream, "outcome"], **opts)
        self.attempts = Counter("attempts", "Attempts sent", [*_INSTANCE, "outcome"], **opts)
        self.tokens = Counter("tokens", "Tokens used", [*_INSTANCE, "type"], **opts)
        self.errors = Counter("errors", "Failed attempts by kind", [*_INSTANCE, "kind"], **opts)
        self.retries = Counter("retries", "Attempts after a request's first", task_stream, **opts)
        self.failovers = Counter(
            "failovers", "Attempts moved to another instance after a failure", task_stream, **opts
        )
        self.waits = Counter("waits", "Waits (cooldown, backoff, capacity)", ["task", "reason"],
                             **opts)  # fmt: skip
        self.wait_seconds = Counter("wait_seconds", "Seconds spent waiting", ["task", "reason"],
                                    **opts)  # fmt: skip
        self.latency = Histogram(
            "attempt_latency_seconds", "Attempt latency", _INSTANCE,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120), **opts,
        )  # fmt: skip
        self.health = Gauge(
            "instance_health", "1 closed, 0.5 half-open, 0 open", ["instance", "provider", "model"],
            **opts,
        )  # fmt: skip
        self._last_instance: dict[int, int] = {}  # request id -> instance of its last attempt
        # prometheus_client's labels() checks and locks on every call (about half of this
        # hook's cost); a label set's child never changes, so each is looked up once.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def __call__(self, event: Event) -> None:
        kind = event.kind
        task = event.task or ""
        stream = "true" if event.stream else "false"
        if kind == "attempt_start":
            previous = self._last_instance.get(event.request_id)
            if event.attempt > 1:
                self._child(self.retries, task, stream).inc()
                if previous is not None and previous != event.instance_id:
                    self._child(self.failovers, task, stream).inc()
            if event.instance_id is not None:
                self._last_instance[event.request_id] = event.instance_id
        elif kind == "attempt_end":
            self._attempt_end(event, task, stream)
        elif kind == "wait":
            self._child(self.waits, task, event.reason or "").inc()
            self._child(self.wait_seconds, task, event.reason or "").inc(event.wait or 0.0)
        elif kind == "request_end":
            self._last_instance.pop(event.request_id, None)
            outcome = "success" if event.success else (event.error_kind or event.reason or "error")
            self._child(self.requests, task, stream, outcome).inc()

    def _attempt_end(self, event: Event, task: str, stream: str) -> None:
        labels = (event.instance_name or "", event.provider or "", event.model or "", task, stream)
        outcome = "success" if event.success else (event.error_kind or event.reason or "error")
        self._child(self.attempts, *labels, outcome).inc()
        if event.latency is not None:
            self._child(self.latency, *labels).observe(event.latency)
        if event.usage is not None:
            self._child(self.tokens, *labels, "prompt").inc(event.usage.prompt_tokens)
            self._child(self.tokens, *labels, "completion").inc(event.usage.completion_tokens)
        if event.error_kind:
            self._child(self.errors, *labels, event.error_kind).inc()
        if event.health is not None:
            self._child(self.health, *labels[:3]).set(_HEALTH.get(event.health, 0.0))
