"""``flyllm emulate`` / ``python -m flyllm.emulator``: options, start-up lines, shutdown."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys

import aiohttp
import pytest

from flyllm.emulator import FAULT_KINDS, Fault
from flyllm.emulator.cli import add_arguments, main, run
from flyllm.emulator.faults import parse_fault_spec
from tests.emulator.conftest import post


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_options_are_parsed() -> None:
    args = parse(
        [
            "--provider", "gemini", "--port", "9000", "--count", "3",
            "--api-key", "k1", "--api-key", "k2", "--latency-ms", "25", "--seed", "7",
            "--fault", "rate_limit=0.25", "--fault", "hang",
        ]
    )  # fmt: skip
    assert (args.provider, args.port, args.count, args.seed, args.latency_ms) == (
        "gemini",
        9000,
        3,
        7,
        25.0,
    )
    assert args.api_keys == ["k1", "k2"] and args.faults == ["rate_limit=0.25", "hang"]
    assert parse_fault_spec("rate_limit=0.25") == Fault("rate_limit", 0.25)
    assert parse_fault_spec("hang", retry_after=None) == Fault("hang", 1.0, None)
    defaults = parse(["--provider", "openai"])
    assert (defaults.port, defaults.count, defaults.api_keys, defaults.faults) == (
        8001,
        1,
        None,
        [],
    )


def test_help_names_every_fault_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for kind in FAULT_KINDS:
        assert kind in text
    for provider in ("openai", "anthropic", "google", "gemini", "mistral"):
        assert provider in text


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse(["--provider", "openai", "--fault", "explode"])) == 2
    assert run(parse(["--provider", "openai", "--fault", "hang=often"])) == 2
    assert run(parse(["--provider", "openai", "--count", "0"])) == 2
    assert "unknown fault kind" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--provider", "bedrock"])


@pytest.mark.parametrize(
    "name",
    ["azure", "azure-openai", "ollama", "cohere", "groq", "together", "togetherai", "perplexity",
     "deepseek", "openrouter", "fireworks", "lmstudio", "lm-studio", "vllm"],
)  # fmt: skip
def test_the_new_providers_are_accepted(name: str) -> None:
    assert parse(["--provider", name]).provider == name


async def test_serves_count_instances_until_sigterm(session: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flyllm.emulator", "--provider", "openai", "--port", "0",
        "--count", "2", "--api-key", "secret-key-1", "--fault", "server_error=0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(2)]
        urls = [re.search(r"base_url=(\S+)", line) for line in lines]
        assert all(urls), lines
        bases = [u.group(1) for u in urls if u is not None]
        assert len(set(bases)) == 2 and all(b.endswith("/v1") for b in bases)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        for base in bases:
            status, _, _ = await post(
                session, base + "/chat/completions", body, {"Authorization": "Bearer secret-key-1"}
            )
            assert status == 200
            status, _, _ = await post(
                session, base + "/chat/completions", body, {"Authorization": "Bearer other"}
            )
            assert status == 401
            async with session.get(base.removesuffix("/v1") + "/_emulator/stats") as response:
                assert (await response.json())["requests"] == 2
        assert not any("secret-key-1" in line for line in lines)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0
    assert b"secret-key-1" not in await process.stderr.read()


def free_port_pair() -> int:
    """A port P such that P and P + 1 are both free right now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no pair of free consecutive ports")


async def test_count_uses_consecutive_ports() -> None:
    port = free_port_pair()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flyllm.emulator", "--provider", "mistral", "--port", str(port),
        "--count", "2", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(2)]
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    assert f"base_url=http://127.0.0.1:{port} " in lines[0]
    assert f"base_url=http://127.0.0.1:{port + 1} " in lines[1]


async def test_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flyllm.emulator", "--provider", "anthropic", "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1 and b"cannot listen" in err
