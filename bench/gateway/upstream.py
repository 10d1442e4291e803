"""The gateways' upstream: a fixed-answer OpenAI-compatible server on loopback, fast enough never
to be the bottleneck (raw asyncio, no framework, on uvloop when installed: a few microseconds of
CPU per request).

``python -m bench.gateway.upstream [--port 0]`` prints ``base_url=http://127.0.0.1:PORT/v1``
once it listens. Every ``POST`` is answered as a chat completion: one fixed JSON answer, or,
when the body asks for ``"stream": true``, a fixed SSE stream (a role chunk, three content
chunks, a finish chunk, a usage chunk when ``include_usage`` is asked for, ``[DONE]``) in one
write, chunked, on a keep-alive connection. A ``GET`` answers a one-model list. Requests are
counted; ``GET /_stats`` answers the count (so a run can tell that each request reached it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import cast

from bench.core import run_fast

__all__ = ["ANSWER", "MODEL", "UpstreamProtocol", "serve"]

MODEL = "bench-model"
ANSWER = "Hello from the bench upstream."
MAX_HEAD = 64 * 1024
"""A request head larger than this is refused (the connection closed): bounded memory."""
MAX_BODY = 4 * 2**20

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_USAGE = re.compile(rb'"include_usage"\s*:\s*true')
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_USAGE_JSON = {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}


def _http(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _completion() -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE_JSON,
    }
    return _http("200 OK", "application/json", json.dumps(body).encode())


def _stream(usage: bool) -> bytes:
    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [choice],
        }

    words = ANSWER.split(" ")
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words[:3])]
    events[-1]["choices"][0]["delta"]["content"] += " " + " ".join(words[3:])  # type: ignore[index]
    events.append(chunk({}, "stop"))
    if usage:
        events.append({**chunk({}), "choices": [], "usage": _USAGE_JSON})
    data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    data += b"data: [DONE]\n\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    head += b"transfer-encoding: chunked\r\n\r\n"
    return head + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


COMPLETION = _completion()
STREAMS = {False: _stream(False), True: _stream(True)}
MODELS = _http(
    "200 OK",
    "application/json",
    json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode(),
)


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request head and body, answer at once."""

    requests = 0
    """Requests answered by every connection of this process."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport."""
        self._transport = None

    def close(self) -> None:
        """Close this connection (a server stopping closes its open connections)."""
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in the buffer."""
        self._buffer += data
        try:
            while self._transport is not None and self._answer_one():
                pass
        except ValueError:  # a malformed or oversized chunked body: drop the connection
            if self._transport is not None:
                self._transport.close()

    def _answer_one(self) -> bool:
        buffer, transport = self._buffer, self._transport
        assert transport is not None
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                transport.close()
            return False
        head = bytes(buffer[:end])
        body_start = end + 4
        if _CHUNKED.search(head):
            body, consumed = _dechunk(buffer, body_start)
            if body is None:
                return False
        else:
            found = _LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            if length > MAX_BODY:
                transport.close()
                return False
            if len(buffer) < body_start + length:
                return False
            body, consumed = bytes(buffer[body_start : body_start + length]), body_start + length
        del buffer[:consumed]
        transport.write(self._answer(head, body))
        return True

    def _answer(self, head: bytes, body: bytes) -> bytes:
        if head.startswith(b"GET /_stats"):
            return _http("200 OK", "application/json", b'{"requests": %d}' % self.requests)
        UpstreamProtocol.requests += 1
        if head.startswith(b"GET "):
            return MODELS
        if _STREAM.search(body):
            return STREAMS[bool(_USAGE.search(body))]
        return COMPLETION


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes | None, int]:
    """The body of a chunked request starting at ``start`` and the bytes it spans, or
    ``(None, 0)`` while it is incomplete."""
    body, pos = bytearray(), start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None, 0
        size = int(bytes(buffer[pos:line_end]).split(b";")[0] or b"0", 16)
        if size > MAX_BODY or len(body) + size > MAX_BODY:
            raise ValueError("chunked body too large")
        if size == 0:
            end = buffer.find(b"\r\n\r\n", line_end)  # after the trailers, if any
            return (bytes(body), end + 4) if end >= 0 else (None, 0)
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None, 0
        body += buffer[chunk_start : chunk_start + size]
        pos = chunk_start + size + 2


async def serve(port: int = 0) -> None:
    """Listen on loopback, print the base URL, serve until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"base_url=http://127.0.0.1:{bound}/v1", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """``python -m bench.gateway.upstream``."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.upstream")
    parser.add_argument("--port", type=int, default=0)
    run_fast(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
