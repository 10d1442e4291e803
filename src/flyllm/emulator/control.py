"""The control API under ``/_emulator/``: read counters and change faults from another process.

``GET  /_emulator/info``      provider, base URL and current settings
``GET  /_emulator/stats``     the counters (:meth:`Emulator.stats`)
``POST /_emulator/reset``     zero counters, clear the request log and the schedule
``GET  /_emulator/faults``    current faults, schedule and latency
``POST /_emulator/faults``    ``{"faults": [{"kind": ..., "probability": ...}], "latency_ms": ...,
                              "jitter_ms": ..., "chunk_delay_ms": ...}`` (each key optional)
``POST /_emulator/schedule``  ``{"kind": ..., "count": ..., "retry_after": ..., "status": ...}``

Control requests are not provider requests: they are not counted and never faulted.

A web page the emulator's user visits must not drive it (a cross-site POST, or DNS rebinding
of a name to 127.0.0.1): control requests must name a loopback ``Host`` (localhost, 127.0.0.0/8,
::1, or the address the emulator is bound to), else 403; a POST must be
``Content-Type: application/json`` (which a browser sends cross-site only after a CORS
preflight the emulator never grants), else 415.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from flyllm.emulator.faults import Fault

if TYPE_CHECKING:
    from flyllm.emulator.server import Emulator

__all__ = ["CONTROL_PREFIX", "handle_control"]

CONTROL_PREFIX = "/_emulator/"
_LATENCY_KEYS = ("latency_ms", "jitter_ms", "chunk_delay_ms")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


async def _body(request: web.BaseRequest) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError:
        raise ValueError("the body must be JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _apply_settings(emu: Emulator, data: dict[str, Any]) -> None:
    unknown = set(data) - {"faults", *_LATENCY_KEYS}
    if unknown:
        raise ValueError(f"unknown setting(s): {sorted(unknown)}")
    faults = None
    if "faults" in data:
        if not isinstance(data["faults"], list) or not all(
            isinstance(f, dict) for f in data["faults"]
        ):
            raise ValueError("faults must be a list of objects")
        faults = [Fault.from_dict(f) for f in data["faults"]]
    latency = {name: _number(data, name) for name in _LATENCY_KEYS}
    emu.set_latency(**latency)
    if faults is not None:
        emu.set_faults(faults)


def _schedule(emu: Emulator, data: dict[str, Any]) -> None:
    count = data.pop("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError("count must be an integer")
    emu.schedule(Fault.from_dict(data), count)


def _host_name(host: str) -> str | None:
    try:
        return urllib.parse.urlsplit(f"//{host}").hostname
    except ValueError:
        return None


def _loopback_host(emu: Emulator, request: web.BaseRequest) -> bool:
    """Whether the Host the client named is this machine's loopback (or the bound address)."""
    name = _host_name(request.host)
    if name is None:
        return False
    if name == "localhost" or name == _host_name(emu.url.split("//", 1)[1]):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _refusal(emu: Emulator, request: web.BaseRequest) -> web.Response | None:
    if not _loopback_host(emu, request):
        return _json({"error": "the control API answers only a loopback Host"}, 403)
    if request.method == "POST" and request.content_type != "application/json":
        return _json({"error": "control POSTs must be Content-Type: application/json"}, 415)
    return None


async def handle_control(emu: Emulator, request: web.BaseRequest) -> web.Response:
    """Answer one control request."""
    refused = _refusal(emu, request)
    if refused is not None:
        return refused
    name = request.path[len(CONTROL_PREFIX) :].strip("/")
    method = request.method
    try:
        if method == "GET" and name == "stats":
            return _json(emu.stats())
        if method == "GET" and name in ("info", ""):
            return _json({"url": emu.url, "base_url": emu.base_url, **emu.settings()})
        if method == "GET" and name == "faults":
            return _json(emu.settings())
        if method == "POST" and name == "reset":
            emu.reset()
            return _json({"ok": True})
        if method == "POST" and name == "faults":
            _apply_settings(emu, await _body(request))
            return _json(emu.settings())
        if method == "POST" and name == "schedule":
            _schedule(emu, await _body(request))
            return _json(emu.settings())
    except (ValueError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"error": f"no control endpoint {method} {request.path}"}, 404)
