"""``flyllm serve``: an OpenAI- and Anthropic-compatible HTTP gateway over an LlmManager.

Clients that cannot import flyllm (other languages, tools that only take a base URL, several
processes sharing one set of keys and limits) reach the pool over HTTP. The gateway uses only
the library's public API: a request is read by a client-protocol dialect into flyllm's
provider-neutral types, answered by the manager, and rendered back in the caller's protocol.

Modules: ``app`` (the aiohttp application and the one handler), ``dialect`` (what a client
protocol implements), ``openai_chat``, ``openai_read`` and ``openai_embeddings`` (OpenAI's Chat
Completions and embeddings), ``anthropic_messages``, ``anthropic_read``, ``anthropic_render`` and
``anthropic_stream`` (Anthropic's Messages), ``errors`` (outcomes and their statuses), ``keys``
(virtual keys), ``settings`` (the ``[gateway]`` table), ``ledger`` and ``redis_ledger`` (keys'
limits and budgets), ``metrics`` (``/metrics``), ``run`` (processes, signals, the drain).
"""

from flyllm.server.app import Gateway
from flyllm.server.errors import GatewayError
from flyllm.server.keys import KeyRing, VirtualKey, hash_key, new_key
from flyllm.server.settings import GatewaySettings, read_gateway_table

__all__ = [
    "Gateway",
    "GatewayError",
    "GatewaySettings",
    "KeyRing",
    "VirtualKey",
    "hash_key",
    "new_key",
    "read_gateway_table",
]
