"""``flyllm serve`` as a process: SIGTERM drains in-flight requests, a grace too short ends
them with errors, N workers on one port, a dying worker, ``--demo``, and the refusals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import openai
import pytest

from flyllm.cli.main import main
from flyllm.emulator import Emulator
from flyllm.errors import ConfigurationError
from flyllm.server.run import run_loop
from tests.server.test_run_robustness import until

CHAT = [{"role": "user", "content": "tell me a story"}]


@pytest.fixture(autouse=True)
async def _no_process_left() -> AsyncIterator[None]:
    yield
    while Serve.started:
        process = Serve.started.pop()
        if process.returncode is None:  # the test failed before stopping it: kill it
            process.kill()
            await process.wait()


def write_config(path: Path, upstreams: dict[str, str], gateway: str = "") -> str:
    """A config file with one task per upstream (task name -> openai base URL)."""
    text = "".join(f"[tasks.{task}]\n" for task in upstreams)
    for task, url in upstreams.items():
        text += (f'[[instances]]\nprovider = "openai"\nmodel = "m"\napi_key = "k"\n'
                 f'base_url = "{url}"\ntasks = ["{task}"]\n')  # fmt: skip
    file = path / "flyllm.toml"
    file.write_text(text + "[gateway]\n" + gateway)
    return str(file)


class Serve:
    """``python -m flyllm.cli serve ARGS`` until its start-up line names its URL."""

    started: ClassVar[list[asyncio.subprocess.Process]] = []
    """Every process started, so that a test failing half-way leaves none running."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, line: str) -> None:
        self.process, self.url, self.line = process, url, line

    @classmethod
    async def start(cls, *args: str) -> Serve:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flyllm.cli", "serve", "--port", "0", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        cls.started.append(process)
        assert process.stderr is not None
        seen = ""
        while True:
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            seen += line
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                return cls(process, found.group(1), line)
            if not line:
                pytest.fail(f"flyllm serve did not start: {seen}")

    async def stop(self, sig: int | None = signal.SIGTERM, seconds: float = 30) -> tuple[int, str]:
        """Send ``sig`` (None: wait for it to stop by itself); the exit code and the rest of
        stderr."""
        if sig is not None and self.process.returncode is None:
            self.process.send_signal(sig)
        _, err = await asyncio.wait_for(self.process.communicate(), seconds)
        assert self.process.returncode is not None
        return self.process.returncode, err.decode()

    async def refuses_connections(self) -> bool:
        port = int(self.url.rsplit(":", 1)[1])
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: the handshake landed in the accept queue just as the listener closed.
            return True
        writer.close()
        return False


async def plain(session: aiohttp.ClientSession, url: str, task: str) -> tuple[int, Any]:
    body = {"model": task, "messages": CHAT}
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        return resp.status, await resp.json()


async def streamed(session: aiohttp.ClientSession, url: str, task: str) -> list[Any]:
    """Every event of a stream (``"[DONE]"`` as such); the first comes back at once via
    ``first`` so a test knows the stream is under way."""
    body = {"model": task, "messages": CHAT, "stream": True}
    events: list[Any] = []
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: "):
                data = line[6:].strip()
                events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


async def test_sigterm_lets_100_in_flight_requests_finish(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        slow = await stack.enter_async_context(Emulator("openai", latency_ms=2000))
        drip = await stack.enter_async_context(
            Emulator("openai", chunk_delay_ms=40, reply_tokens=50)  # about 2 s of stream
        )
        config = write_config(tmp_path, {"plain": slow.base_url, "drip": drip.base_url},
                              "grace_seconds = 20\n")  # fmt: skip
        served = await Serve.start("--config", config)
        assert "(uvloop)" in served.line  # installed by the test extra: used by default
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        calls = [asyncio.create_task(plain(session, served.url, "plain")) for _ in range(50)]
        streams = [asyncio.create_task(streamed(session, served.url, "drip")) for _ in range(50)]
        await until(lambda: slow.stats()["requests"] == drip.stats()["streams_started"] == 50, 20)
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        assert slow.stats()["in_flight"] == drip.stats()["in_flight"] == 50  # all 100 in flight
        while not await served.refuses_connections():  # stops accepting at once
            assert time.monotonic() - signalled < 2.0
            await asyncio.sleep(0.02)
        answers = await asyncio.gather(*calls)
        stories = await asyncio.gather(*streams)
        code, err = await served.stop()
    assert code == 0, err
    assert all(status == 200 for status, _ in answers)
    assert all(body["choices"][0]["finish_reason"] == "stop" for _, body in answers)
    assert all(events[-1] == "[DONE]" for events in stories)
    assert all(events[-2]["choices"][0]["finish_reason"] == "stop" for events in stories)
    assert len({text_of(events) for events in stories}) == 1  # the same whole answer
    assert len(text_of(stories[0]).split()) >= 40
    assert "grace over" not in err


async def test_past_the_grace_each_unfinished_request_gets_an_error(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        slow = await stack.enter_async_context(Emulator("openai", latency_ms=20_000))
        drip = await stack.enter_async_context(
            Emulator("openai", chunk_delay_ms=500, reply_tokens=40)  # about 20 s of stream
        )
        config = write_config(tmp_path, {"plain": slow.base_url, "drip": drip.base_url},
                              "grace_seconds = 0.5\n")  # fmt: skip
        served = await Serve.start("--config", config, "--loop", "asyncio")
        assert "(asyncio)" in served.line
        session = await stack.enter_async_context(aiohttp.ClientSession())
        calls = [asyncio.create_task(plain(session, served.url, "plain")) for _ in range(3)]
        streams = [asyncio.create_task(streamed(session, served.url, "drip")) for _ in range(3)]
        await until(lambda: slow.stats()["in_flight"] == drip.stats()["streams_started"] == 3)
        await asyncio.sleep(0.6)  # each stream has sent a chunk or two
        signalled = time.monotonic()
        code, err = await served.stop()
        took = time.monotonic() - signalled
        answers = await asyncio.gather(*calls)
        stories = await asyncio.gather(*streams)
        await until(lambda: slow.stats()["in_flight"] == drip.stats()["in_flight"] == 0)
    assert code == 0 and took < 6, (code, took, err)  # grace 0.5 s + up to 2 s to say so
    assert "ended 6 unfinished request(s)" in err
    for status, body in answers:
        assert status == 503 and "shutting down" in body["error"]["message"]
    for events in stories:
        assert text_of(events)  # the stream had started...
        assert "shutting down" in events[-1]["error"]["message"]  # ...and ends with why


async def test_two_workers_share_the_port_and_a_second_sigterm_ends_the_grace(
    tmp_path: Path, redis_url: str
) -> None:
    async with AsyncExitStack() as stack:
        fast = await stack.enter_async_context(Emulator("openai"))
        slow = await stack.enter_async_context(Emulator("openai", latency_ms=30_000))
        config = write_config(tmp_path, {"chat": fast.base_url, "slow": slow.base_url},
                              "grace_seconds = 60\n")  # fmt: skip
        served = await Serve.start("--config", config, "--workers", "2", "--state", redis_url)
        pids = [int(p) for p in re.findall(r"\d+", served.line.split("pids", 1)[1])]
        assert len(pids) == 2
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        workers = set()
        for _ in range(20):
            body = {"model": "chat", "messages": CHAT}
            async with session.post(served.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                workers.add(resp.headers["x-request-id"][:12])  # per-process prefix
        assert len(workers) == 2  # the kernel spread the connections over both
        waiting = asyncio.create_task(plain(session, served.url, "slow"))
        await until(lambda: slow.stats()["in_flight"] == 1)
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)  # a 60 s grace starts...
        await asyncio.sleep(0.5)
        assert not waiting.done()
        code, err = await served.stop()  # ...and a second signal ends it
        status, body = await waiting
    assert code == 0, err
    assert time.monotonic() - signalled < 10
    assert status == 503 and "shutting down" in body["error"]["message"]
    assert not any(_alive(pid) for pid in pids)


async def test_a_dying_worker_stops_the_gateway_with_exit_code_1(
    tmp_path: Path, redis_url: str
) -> None:
    config = write_config(tmp_path, {"chat": "http://127.0.0.1:9/v1"})
    served = await Serve.start("--config", config, "--workers", "2", "--state", redis_url)
    first, second = (int(p) for p in re.findall(r"\d+", served.line.split("pids", 1)[1]))
    os.kill(second, signal.SIGKILL)
    code, err = await served.stop(None)
    assert code == 1
    assert f"(pid {second}) died (signal 9): stopping the others" in err
    assert not _alive(first)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_demo_prints_a_curl_line_and_sdk_variables_that_work() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flyllm.cli", "serve", "--demo", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not lines or "Ctrl-C" not in lines[-1]:
            lines.append((await asyncio.wait_for(process.stdout.readline(), 60)).decode())
            assert lines[-1], "".join(lines)
        (curl,) = [shlex.split(line) for line in lines if line.strip().startswith("curl ")]
        url = next(word for word in curl if word.startswith("http://"))
        header = curl[curl.index("-H") + 1].split(": ", 1)
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=curl[curl.index("-d") + 1], headers=[header]) as resp,
        ):
            assert resp.status == 200
            answer = await resp.json()
        assert answer["choices"][0]["message"]["content"]
        env = dict(
            line.split(None, 1)[1].strip().split("=", 1)
            for line in lines
            if line.strip().startswith("export ")
        )
        assert set(env) == {"OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL",
                            "ANTHROPIC_API_KEY"}  # fmt: skip
        assert env["OPENAI_BASE_URL"] == env["ANTHROPIC_BASE_URL"] + "/v1"
        client = openai.AsyncOpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"])
        async with client:
            reply = await client.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0


def test_workers_with_the_memory_store_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"chat": "http://127.0.0.1:9/v1"})
    assert main(["serve", "--config", config, "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers 2 needs a shared state store" in err and "--state redis://" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])
def test_an_open_gateway_refuses_a_public_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    config = write_config(tmp_path, {"chat": "http://127.0.0.1:9/v1"})
    assert main(["serve", "--config", config, "--host", host]) == 2
    err = capsys.readouterr().err
    assert f"refusing to serve on {host} without virtual keys" in err
    assert "[[gateway.keys]]" in err


def test_demo_refuses_a_public_address_and_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--demo", "--host", "0.0.0.0"]) == 2
    assert "loopback only" in capsys.readouterr().err
    assert main(["serve", "--demo", "--config", "x.toml"]) == 2
    assert "--demo takes no --config" in capsys.readouterr().err


def test_loop_uvloop_without_uvloop_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never() -> int:
        raise AssertionError("must not run")

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'flyllm\[uvloop\]'"):
        run_loop(never(), "uvloop")

    async def answer() -> int:
        return 7

    assert run_loop(answer(), "auto") == 7  # auto falls back to asyncio's loop
