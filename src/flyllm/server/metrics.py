"""``GET /metrics``: the library's Prometheus series plus the gateway's per-key counters.

The library's series come from flyllm.observe.metrics.PrometheusMetrics, hooked on the
manager, on a registry of the gateway's own (so two gateways in one process never collide).
Per-key series are labelled by the key's NAME only, never the key or its hash:

    flyllm_gateway_key_requests_total{key, outcome}     ok, or the error kind (rate_limit, ...)
    flyllm_gateway_key_tokens_total{key, type}          prompt, completion
    flyllm_gateway_key_spend_usd_total{key}             the cost of the key's answers
    flyllm_gateway_key_rejections_total{key, reason}    rpm, tpm, max_concurrent, budget, expired

Requires prometheus-client (the ``flyllm[serve]`` extra); without it ``gateway_metrics``
returns None and ``/metrics`` answers 501 naming the extra.
"""

from __future__ import annotations

from typing import Any

from flyllm.manager import LlmManager
from flyllm.types import Usage

__all__ = ["GatewayMetrics", "gateway_metrics"]

MISSING = "metrics need prometheus-client: pip install 'flyllm[serve]' and restart the gateway"
"""What ``/metrics`` answers (501) when prometheus-client is not installed."""


class GatewayMetrics:
    """The gateway's registry: the manager's series and the per-key counters."""

    def __init__(self, manager: LlmManager) -> None:
        from prometheus_client import CollectorRegistry, Counter

        from flyllm.observe.metrics import PrometheusMetrics

        self.registry: Any = CollectorRegistry()
        manager.add_hook(PrometheusMetrics(registry=self.registry))
        opts: dict[str, Any] = {"namespace": "flyllm", "subsystem": "gateway",
                                "registry": self.registry}  # fmt: skip
        self.requests = Counter("key_requests", "Requests by key and outcome",
                                ["key", "outcome"], **opts)  # fmt: skip
        self.tokens = Counter("key_tokens", "Tokens used by key", ["key", "type"], **opts)
        self.spend = Counter("key_spend_usd", "Spend in USD by key", ["key"], **opts)
        self.rejections = Counter("key_rejections", "Requests refused by a key's limit",
                                  ["key", "reason"], **opts)  # fmt: skip
        self._children: dict[str, tuple[Any, Any, Any]] = {}
        self._outcomes: dict[tuple[str, str], Any] = {}

    def request(self, key: str, outcome: str) -> None:
        """Count one finished request of ``key``."""
        child = self._outcomes.get((key, outcome))
        if child is None:  # labels() costs a dozen calls: once per key and outcome
            child = self._outcomes[(key, outcome)] = self.requests.labels(key, outcome)
        child.inc()

    def used(self, key: str, usage: Usage, cost: float | None) -> None:
        """Count an answer's tokens and cost."""
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.tokens.labels(key, "prompt"),
                self.tokens.labels(key, "completion"),
                self.spend.labels(key),
            )
        children[0].inc(usage.prompt_tokens)
        children[1].inc(usage.completion_tokens)
        if cost:
            children[2].inc(cost)

    def rejected(self, key: str, reason: str) -> None:
        """Count a request refused by one of ``key``'s limits (or its expiry)."""
        self.rejections.labels(key, reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def gateway_metrics(manager: LlmManager) -> GatewayMetrics | None:
    """The gateway's metrics over ``manager``, or None when prometheus-client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return None
    return GatewayMetrics(manager)
