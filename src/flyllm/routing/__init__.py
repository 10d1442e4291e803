"""Routing: which instance answers, and what happens when one fails.

``strategies`` (the pure choice among candidates), ``resilience`` (retry, backoff, circuit
breaker), ``limits`` (client-side rate limits), ``instance`` (an instance and its counters),
``state`` and ``redis_state`` (the stats stores), ``attempts`` (the attempt loop over an engine
interface) and ``settings`` (set-up checks and the state store a manager names). This layer sits
below the engine and the manager and above the providers, the transport and ``flyllm.observe``;
the public names are re-exported by ``flyllm``.
"""
