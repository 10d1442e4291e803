"""The floor for a Python gateway: a plain aiohttp reverse proxy with no routing.

``python -m bench.gateway.plain_proxy --upstream http://127.0.0.1:PORT --port N`` forwards every
request's method, path, body, ``content-type`` and ``authorization`` to the upstream over one
pooled client session, and the answer back: read whole, or relayed chunk by chunk when it is a
``text/event-stream``. No parsing, no routing, no access log: what any aiohttp gateway pays
before it does anything of its own. It runs on uvloop when uvloop is installed, as flyllm serve
does, so that the floor and flyllm run on the same event loop (``--loop asyncio`` forces the
standard one).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bench.core import run_fast

__all__ = ["make_app", "serve"]

_FORWARDED = ("content-type", "authorization", "accept")
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


async def _forward(request: web.Request) -> web.StreamResponse:
    session, upstream = request.app[SESSION], request.app[UPSTREAM]
    headers = {k: v for k in _FORWARDED if (v := request.headers.get(k)) is not None}
    body = await request.read()
    url = upstream + request.path_qs
    async with session.request(request.method, url, data=body, headers=headers) as resp:
        if resp.content_type != "text/event-stream":
            data = await resp.read()
            return web.Response(status=resp.status, body=data, content_type=resp.content_type)
        out = web.StreamResponse(status=resp.status)
        out.content_type = resp.content_type
        await out.prepare(request)
        async for chunk in resp.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
        return out


def make_app(upstream: str) -> web.Application:
    """The proxy's application: one catch-all route and one client session (closed with it)."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", _forward)
    return app


async def serve(upstream: str, port: int) -> None:
    """Listen on loopback; print ``listening on URL`` once ready; serve until cancelled."""
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    print(f"listening on {site.name}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """``python -m bench.gateway.plain_proxy``."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.plain_proxy")
    parser.add_argument("--upstream", required=True, help="the upstream's root URL")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    if args.loop == "asyncio":
        asyncio.run(serve(args.upstream, args.port))
    else:
        run_fast(serve(args.upstream, args.port))


if __name__ == "__main__":
    main()
