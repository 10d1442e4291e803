"""Hostile input through flyllm's ways in: config files (YAML bombs, absurd nesting), batch
input lines, two batch runs on one output, and the emulator's control API. Each case runs
inside a time and memory budget."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import logging
import os
import pathlib
import re
import uuid

import aiohttp
import pytest
from aiohttp import web

from flyllm import ConfigurationError, LlmManager
from flyllm.cli import main
from flyllm.cli.batchfile import BatchInputError, ResultWriter, parse_line, read_results
from flyllm.cli.batchrun import OutputInUseError, run_batch
from flyllm.config.loader import read_config
from flyllm.emulator import Emulator, key_fingerprint
from flyllm.emulator.stats import MAX_TABLE
from tests.hostile.conftest import budget, http_server

# -- config files ------------------------------------------------------------------------------

_LAUGHS = "\n".join(
    [
        'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)),
    ]
)
"""The billion laughs: under 1 KB that expands to 9**10 strings."""

_DEEP = 50_000

_BOMBS = {
    "self-anchor.yaml": "strategy: &loop [*loop]\n",
    "laughs.yaml": _LAUGHS + "\n",
    "laughs-in-a-string.yaml": _LAUGHS.replace('"lol"', '"${HOME}"') + "\n",
    "deep.yaml": "strategy: " + "[" * _DEEP + "]" * _DEEP + "\n",
    "deep-map.yaml": "strategy: " + "{a: " * _DEEP + "1" + "}" * _DEEP + "\n",
    "deep.toml": "strategy = " + "[" * _DEEP + "]" * _DEEP + "\n",
    "deep-table.toml": "strategy = " + "{a = " * _DEEP + "1" + "}" * _DEEP + "\n",
}


@pytest.mark.parametrize("name", sorted(_BOMBS))
def test_config_bombs_are_configuration_errors(tmp_path: pathlib.Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(_BOMBS[name])
    assert len(_BOMBS[name]) < 1024 or "deep" in name
    with budget(seconds=3, megabytes=60), pytest.raises(ConfigurationError) as info:
        read_config(path)
    assert str(info.value).startswith(f"{path}")


@pytest.mark.parametrize("name", ["self-anchor.yaml", "laughs.yaml", "deep.toml"])
def test_config_check_reports_a_bomb_in_one_line(
    tmp_path: pathlib.Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text(_BOMBS[name])
    with budget(seconds=3, megabytes=60):
        code = main(["config", "check", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"flyllm: {path}") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_anchors_within_reason_still_load(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "tasks:\n"
        "  one: {parameters: &p {max_tokens: 5, stop: [a, b]}}\n"
        "  two: {parameters: *p}\n"
        "instances:\n"
        "  - &inst {provider: openai, model: m, api_key: k, tasks: [one, two]}\n"
        "  - *inst\n"
    )
    config = read_config(path)
    assert [t.parameters for t in config.tasks] == [{"max_tokens": 5, "stop": ["a", "b"]}] * 2
    assert len(config.instances) == 2


# -- batch input lines -------------------------------------------------------------------------

_HOSTILE_LINES = {
    "a 5,000-digit id": b'{"id": ' + b"9" * 5000 + b', "prompt": "x"}',
    "deep params": b'{"id": "p", "prompt": "x", "params": {"a": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    "a deep line": b"[" * 100_000 + b"]" * 100_000,
    "NaN": b'{"id": "n", "prompt": "x", "params": {"temperature": NaN}}',
    "Infinity": b'{"id": "i", "prompt": "x", "deadline": Infinity}',
    "not UTF-8": b'{"id": "u", "prompt": "caf\xe9"}',
}


@pytest.mark.parametrize("what", sorted(_HOSTILE_LINES))
def test_parse_line_refuses_hostile_json(what: str) -> None:
    with budget(seconds=2, megabytes=60), pytest.raises(BatchInputError) as info:
        parse_line(_HOSTILE_LINES[what], 3)
    assert info.value.line == 3 and len(str(info.value)) < 200


async def test_batch_skips_hostile_lines_and_answers_the_others(tmp_path: pathlib.Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = [b'{"id": "first", "prompt": "hello"}', b'{"id": "last", "prompt": "bye"}']
    inp.write_bytes(b"\n".join([good[0], *_HOSTILE_LINES.values(), good[1]]) + b"\n")
    err = io.StringIO()
    async with Emulator("openai") as emu, LlmManager() as manager:
        manager.add_provider("openai", "k-batch", "m", base_url=emu.base_url)
        with budget(seconds=5, megabytes=80):
            report = await run_batch(manager, str(inp), str(out), concurrency=4, err=err)
    assert (report.succeeded, report.failed, report.malformed) == (2, 0, len(_HOSTILE_LINES))
    assert report.exit_code == 1
    assert sorted(record["id"] for _, record in read_results(str(out)) if record) == [
        "first",
        "last",
    ]
    for number in range(2, 2 + len(_HOSTILE_LINES)):
        assert f"{inp}:{number}: " in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_result_writer_keeps_a_lone_surrogate_from_a_server(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.jsonl"
    with ResultWriter(str(out)) as writer:
        writer.write({"id": 1, "content": "half a pair: \ud800"})
    assert json.loads(out.read_bytes())["content"] == "half a pair: \ud800"


# -- two runs on one output --------------------------------------------------------------------


async def test_batch_refuses_an_output_another_run_holds(tmp_path: pathlib.Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"id": 1, "prompt": "x"}\n')
    out.write_text('{"id": 0, "success": true')  # a torn line: repairing it is writing too
    holder = os.open(out, os.O_RDONLY)  # what another run's lock looks like
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    err = io.StringIO()
    try:
        async with Emulator("openai") as emu, LlmManager() as manager:
            manager.add_provider("openai", "k-lock", "m", base_url=emu.base_url)
            with budget(seconds=2, megabytes=30), pytest.raises(OutputInUseError) as info:
                await run_batch(manager, str(inp), str(out), concurrency=4, err=err)
            assert emu.stats()["requests"] == 0
    finally:
        os.close(holder)
    assert "another flyllm batch run" in str(info.value) and str(out) in str(info.value)
    assert out.read_text() == '{"id": 0, "success": true'  # untouched
    async with Emulator("openai") as emu, LlmManager() as manager:  # released: runs again
        manager.add_provider("openai", "k-lock", "m", base_url=emu.base_url)
        report = await run_batch(manager, str(inp), str(out), concurrency=4, err=err)
    assert report.succeeded == 1


# -- the emulator's control API ----------------------------------------------------------------


async def test_control_api_shows_key_fingerprints_in_a_bounded_table() -> None:
    good = f"sk-good-{uuid.uuid4().hex}"
    rejected = [f"sk-wrong-{uuid.uuid4().hex}-{i}" for i in range(MAX_TABLE + 50)]
    async with Emulator("openai", api_keys={good}) as emu, aiohttp.ClientSession() as session:
        url = emu.base_url + "/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        with budget(seconds=8, megabytes=40):
            for key in [good, *rejected]:
                headers = {"Authorization": f"Bearer {key}"}
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
            async with session.get(emu.url + "/_emulator/stats") as response:
                raw = await response.text()
    stats = json.loads(raw)
    assert good not in raw and not any(key in raw for key in rejected)
    assert stats["by_key"][key_fingerprint(good)] == 1
    assert len(stats["by_key"]) == MAX_TABLE + 1  # the first MAX_TABLE keys, then "(other)"
    assert stats["by_key"]["(other)"] == len(rejected) + 1 - MAX_TABLE
    assert sum(stats["by_key"].values()) == stats["requests"] == len(rejected) + 1
    assert len(key_fingerprint(good)) < 24 and key_fingerprint(good) != key_fingerprint("x")


async def test_control_api_bounds_the_model_table() -> None:
    async with Emulator("openai") as emu, aiohttp.ClientSession() as session:
        url = emu.base_url + "/chat/completions"
        headers = {"Authorization": "Bearer k"}
        with budget(seconds=8, megabytes=40):
            for i in range(MAX_TABLE + 20):
                body = {
                    "model": f"m{i}-" + "x" * 5000,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
        by_model = emu.stats()["by_model"]
    assert len(by_model) == MAX_TABLE + 1 and by_model["(other)"] == 20
    assert max(len(name) for name in by_model) <= 200


_ATTACKS = [
    ("text/plain", "127.0.0.1", 415),  # a cross-site form or fetch() without a preflight
    ("application/x-www-form-urlencoded", "localhost", 415),
    ("", "127.0.0.1", 415),
    ("application/json", "evil.example", 403),  # DNS rebinding: a page on evil.example
    ("application/json", "evil.example:80", 403),
    ("application/json", "127.0.0.1.evil.example", 403),
]


@pytest.mark.parametrize(("content_type", "host", "status"), _ATTACKS)
async def test_control_api_refuses_cross_site_requests(
    content_type: str, host: str, status: int
) -> None:
    payload = json.dumps({"faults": [{"kind": "server_error"}]}).encode()
    async with Emulator("openai") as emu, aiohttp.ClientSession() as session:
        headers = {"Host": host, "Content-Type": content_type}
        with budget(seconds=2, megabytes=30):
            for name in ("faults", "schedule", "reset"):
                url = f"{emu.url}/_emulator/{name}"
                async with session.post(url, data=payload, headers=headers) as response:
                    assert response.status == status, name
                    assert "error" in await response.json()
            if status == 403:  # a foreign Host reads nothing either
                async with session.get(emu.url + "/_emulator/stats", headers=headers) as response:
                    assert response.status == 403
        assert emu.settings()["faults"] == [] and emu.settings()["scheduled"] == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
async def test_control_api_answers_loopback_hosts(host: str) -> None:
    async with Emulator("openai") as emu, aiohttp.ClientSession() as session:
        headers = {"Host": f"{host}:{emu.port}"}
        url = emu.url + "/_emulator/faults"
        async with session.post(url, json={"latency_ms": 1}, headers=headers) as response:
            assert response.status == 200
        assert emu.settings()["latency_ms"] == 1


async def test_binding_beyond_loopback_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flyllm.emulator"):
        async with Emulator("openai"):
            pass
        assert not caplog.records
        async with Emulator("openai", host="0.0.0.0"):  # never connected to: bound, then closed
            pass
    [record] = caplog.records
    assert "0.0.0.0" in record.getMessage() and "not loopback" in record.getMessage()


# -- what a server says, on a terminal ---------------------------------------------------------

_NASTY = "\x1b[2J\x1b]0;owned\x07hello\x9b1m world\x1b[0m\x00\r\x7f"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


async def _nasty_server(request: web.Request) -> web.StreamResponse:
    if request.method == "GET":  # the models endpoint
        models = [{"id": "gpt" + _NASTY, "object": "model", "created": 0, "owned_by": "x"}]
        return web.json_response({"object": "list", "data": models})
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    if prompt == "fail":
        error = {"message": "bad " + _NASTY + "\nsecond line", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)
    if body.get("stream"):
        delta = {"index": 0, "delta": {"content": _NASTY}, "finish_reason": None}
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [delta]}  # fmt: skip
        end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        text = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(end)}\n\ndata: [DONE]\n\n"
        return web.Response(text=text, content_type="text/event-stream")
    return web.json_response({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m" + _NASTY,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": _NASTY},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    })  # fmt: skip


async def test_control_characters_from_a_server_never_reach_the_terminal(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "flyllm.toml"
    async with http_server(_nasty_server) as url:
        config.write_text(
            f'max_attempts = 1\n[[instances]]\nprovider = "openai"\nmodel = "m"\n'
            f'api_key = "k-nasty"\nbase_url = "{url}/v1"\n'
        )
        runs = [
            (["ask", "hi"], 0),
            (["ask", "hi", "--stream"], 0),
            (["ask", "hi", "--json"], 0),
            (["ask", "fail"], 1),
            (["models", "openai", "--base-url", f"{url}/v1", "--api-key", "k-nasty"], 0),
            (["models", "openai", "--base-url", f"{url}/v1", "--api-key", "k-nasty", "--json"], 0),
        ]
        with budget(seconds=5, megabytes=60):
            for args, code in runs:
                if args[0] == "ask":
                    args += ["--config", str(config)]
                returned = await asyncio.to_thread(main, args)
                out, err = capsys.readouterr()
                assert returned == code, (args, err)
                assert not _CONTROL.search(out + err), (args, out, err)
                if args[:2] == ["ask", "hi"] and "--json" not in args:
                    assert out == "hello world\n"
                if "--json" in args:
                    json.loads(out)  # still JSON, the characters escaped
                if args[1] == "fail":
                    assert err.count("\n") == 1 and "bad hello world" in err
