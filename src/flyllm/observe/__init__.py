"""Observability: what the manager reports about its work.

``events`` (the ``Event`` every hook receives), ``metrics`` (Prometheus counters fed by a hook),
``journal`` (a JSON-lines request log fed by a hook), ``log`` (``use_logging``) and ``progress``
(the bar of ``batch_generate(progress=True)``). This layer sits low: it imports only flyllm's
values (types, errors, ``_display``), so routing and the engine can emit events.

Import the hooks from here: ``from flyllm.observe.metrics import PrometheusMetrics``,
``from flyllm.observe.journal import Journal``.
"""
