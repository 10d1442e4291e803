"""The ``flyllm`` command in a subprocess against emulators serving from threads: ask, batch
(resume after kill -9 and Ctrl-C, malformed lines, --strict), usage, config check; exit codes;
stdout holds results only; the API key never appears in any output."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flyllm.cli import main
from flyllm.cli.batchfile import (
    BatchInputError,
    UsageRow,
    bundled_cost,
    format_usage_rows,
    open_output,
    parse_line,
    read_results,
)
from flyllm.emulator import Emulator
from flyllm.types import Message, Usage
from tests.integration.conftest import emulator_in_thread

CANARY = "sk-cli-canary-0f0f0f"
ANSWER = re.compile(r"^t[0-9a-f]{7}( [a-z]+)+$")
RECORD_KEYS = {
    "id", "success", "content", "error", "error_kind", "provider", "model", "instance_id",
    "usage", "finish_reason", "latency", "attempts",
}  # fmt: skip

CONFIG = """
max_attempts = 2

[tasks.summary]
parameters = {{ max_tokens = 12 }}

[tasks.qa]
parameters = {{ max_tokens = 8 }}

[[instances]]
provider = "openai"
name = "oa"
model = "gpt-4o-mini"
api_key = "${{FLYLLM_TEST_KEY}}"
base_url = "{openai}"
tasks = ["summary", "qa"]

[[instances]]
provider = "anthropic"
name = "an"
model = "claude-sonnet-4-5"
api_key = "${{FLYLLM_TEST_KEY}}"
base_url = "{anthropic}"
tasks = ["summary"]
"""


@pytest.fixture(scope="module")
def emus() -> Iterator[tuple[Emulator, Emulator]]:
    with (
        emulator_in_thread("openai", api_keys={CANARY}) as oa,
        emulator_in_thread("anthropic", api_keys={CANARY}) as an,
    ):
        yield oa, an


@pytest.fixture
def config(tmp_path: pathlib.Path, emus: tuple[Emulator, Emulator]) -> str:
    path = tmp_path / "flyllm.toml"
    path.write_text(CONFIG.format(openai=emus[0].base_url, anthropic=emus[1].base_url))
    return str(path)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLYLLM_CONFIG", "FLYLLM_LOG")}
    env.update(FLYLLM_TEST_KEY=CANARY, **extra)
    return env


def _check_secret(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text


def run(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """One ``flyllm`` run; fails the test if the key shows up in its output."""
    done = subprocess.run(
        [sys.executable, "-m", "flyllm.cli", *args],
        env=env or _env(),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    _check_secret(done.stdout, done.stderr)
    return done


def _lines(path: pathlib.Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the output must end with a whole line"
    return [json.loads(line) for line in raw.splitlines()]


def _write_jsonl(path: pathlib.Path, rows: list[dict[str, Any] | str]) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


# -- ask ---------------------------------------------------------------------------------------


def test_ask_prints_only_the_answer(config: str) -> None:
    done = run("ask", "Hello there", "--config", config, "--task", "qa")
    assert done.returncode == 0, done.stderr
    assert ANSWER.match(done.stdout.rstrip("\n")), done.stdout
    assert len(done.stdout.split()) <= 8
    assert done.stderr == ""


def test_ask_stream_prints_the_same_answer(config: str) -> None:
    plain = run("ask", "Stream me", "--config", config, "--task", "qa")
    streamed = run("ask", "Stream me", "--config", config, "--task", "qa", "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == plain.stdout
    assert streamed.stderr == ""


def test_ask_json(config: str) -> None:
    done = run(
        "ask", "Hi", "--config", config, "--task", "summary", "--system", "Be brief.",
        "--param", "max_tokens=3", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record) == RECORD_KEYS - {"id"}
    assert record["success"] is True
    assert record["provider"] in ("openai", "anthropic")
    assert record["finish_reason"] == "length"
    assert record["usage"]["completion_tokens"] == 3


def test_ask_finds_its_config(config: str, tmp_path: pathlib.Path) -> None:
    via_env = run("ask", "Hi", env=_env(FLYLLM_CONFIG=config), cwd=str(tmp_path.parent))
    assert via_env.returncode == 0, via_env.stderr
    via_cwd = run("ask", "Hi", cwd=str(tmp_path))  # ./flyllm.toml
    assert via_cwd.returncode == 0, via_cwd.stderr
    nowhere = run("ask", "Hi", cwd=str(tmp_path.parent))
    assert nowhere.returncode == 2
    assert "no config file" in nowhere.stderr and nowhere.stdout == ""


def test_ask_reads_stdin(config: str) -> None:
    done = run("ask", "--config", config, stdin="a piped prompt\n")
    assert done.returncode == 0, done.stderr
    assert ANSWER.match(done.stdout.strip())


def test_ask_failure_exits_1(config: str) -> None:
    done = run("ask", "too long [[context_length]]", "--config", config)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("flyllm: context_length:")
    as_json = run("ask", "too long [[context_length]]", "--config", config, "--json")
    assert as_json.returncode == 1
    record = json.loads(as_json.stdout)
    assert (record["success"], record["error_kind"]) == (False, "context_length")
    streamed = run("ask", "[[context_length]]", "--config", config, "--stream")
    assert streamed.returncode == 1 and streamed.stdout == ""


def test_ask_says_when_it_waits_for_capacity(config: str, emus: tuple[Emulator, Emulator]) -> None:
    emus[0].schedule("rate_limit", 1, retry_after=1.5)  # qa: only "oa" serves it
    started = time.monotonic()
    done = run("ask", "Hi", "--task", "qa", "--config", config)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.4
    assert ANSWER.match(done.stdout.strip())
    [line] = [x for x in done.stderr.splitlines() if " waits " in x]  # the manager's own words
    assert re.fullmatch(
        r"flyllm: request \d+ waits 1\.\d s, until \d\d:\d\d:\d\d, "
        r"(before retrying|for a cooling instance): .*\(oa\).*rate_limit.*",
        line,
    ), line
    quick = run("ask", "Hi", "--task", "qa", "--config", config)
    assert quick.returncode == 0 and " waits " not in quick.stderr  # no wait, no line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "unknown task 'nope'; the config defines: summary, qa"),
        (["--stream", "--json"], "not allowed with argument"),
        (["--param", "oops"], "expected KEY=VALUE"),
        (["--param", "max_attempts=x", "--param", "temperature=hot"], "invalid_request"),
    ],
)
def test_ask_usage_errors_exit_2(config: str, args: list[str], message: str) -> None:
    done = run("ask", "Hi", "--config", config, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_config_errors_exit_2(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[instances]]\nprovider = "opena"\nmodel = "m"\napi_key = "${FLYLLM_TEST_KEY}"\n'
    )
    for args in (["ask", "Hi", "--config", str(bad)], ["config", "check", str(bad)]):
        done = run(*args)
        assert done.returncode == 2
        assert f"{bad}: instances[0].provider: unknown provider 'opena'" in done.stderr
        assert done.stdout == ""


# -- batch -------------------------------------------------------------------------------------


def test_batch_answers_every_id_and_usage_sums_them(config: str, tmp_path: pathlib.Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows: list[dict[str, Any] | str] = [
        {"id": f"r{i}", "prompt": f"summarize {i}", "task": "summary"} for i in range(8)
    ]
    rows += [
        {"id": 100, "messages": [{"role": "user", "content": "hi"}], "task": "qa"},
        {"prompt": "no id: the line number is the id", "system": "terse", "params": {"seed": 1}},
        {"id": "bad", "prompt": "[[context_length]]"},
    ]
    _write_jsonl(inp, rows)
    done = run("batch", str(inp), "-o", str(out), "--config", config, "--concurrency", "4")
    assert done.returncode == 1, done.stderr  # one request failed
    assert done.stdout == ""
    assert "10 succeeded, 1 failed" in done.stderr
    records = _lines(out)
    assert sorted(map(str, (r["id"] for r in records))) == sorted(
        [f"r{i}" for i in range(8)] + ["100", "10", "bad"]
    )
    assert all(set(r) == RECORD_KEYS for r in records)
    failed = [r for r in records if not r["success"]]
    assert [(r["id"], r["error_kind"]) for r in failed] == [("bad", "context_length")]
    assert {r["provider"] for r in records if r["success"]} == {"openai", "anthropic"}

    usage = run("usage", str(out), "--json")
    assert usage.returncode == 0 and usage.stderr == ""
    data = json.loads(usage.stdout)
    assert data["total"]["requests"] == 11 and data["total"]["failures"] == 1
    tokens = sum(r["usage"]["total_tokens"] for r in records)
    assert data["total"]["total_tokens"] == tokens > 0

    again = run("batch", str(inp), "-o", str(out), "--config", config)
    assert again.returncode == 1
    assert "0 succeeded, 1 failed, 10 already done" in again.stderr  # the failed id, again
    assert len(_lines(out)) == 12
    usage = run("usage", str(out), "--json")
    assert json.loads(usage.stdout)["total"] == data["total"]  # the last line of an id wins
    table = run("usage", str(out))
    assert table.stdout.startswith("--- Batch Usage ---")
    assert re.search(r"TOTAL\s+11\s+1\s", table.stdout)
    assert "Cost (USD)" in table.stdout

    skip = run("batch", str(inp), "-o", str(out), "--config", config, "--skip-failed")
    assert skip.returncode == 0, skip.stderr
    assert "0 succeeded, 0 failed, 11 already done" in skip.stderr


def test_batch_reports_malformed_lines(
    config: str, tmp_path: pathlib.Path, emus: tuple[Emulator, Emulator]
) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(inp, [
        {"id": 1, "prompt": "fine"},
        '{"id": 2, "prompt": ',
        "",
        {"id": 4, "promt": "typo"},
        {"id": 1, "prompt": "again"},
        {"id": 6, "messages": [{"role": "robot", "content": "x"}]},
        {"id": 7},
        {"id": 8, "prompt": "fine too"},
    ])  # fmt: skip
    before = sum(e.stats()["requests"] for e in emus)
    strict = run("batch", str(inp), "-o", str(out), "--config", config, "--strict")
    assert strict.returncode == 2
    assert not out.exists() or out.read_bytes() == b""
    assert sum(e.stats()["requests"] for e in emus) == before  # nothing was sent

    done = run("batch", str(inp), "-o", str(out), "--config", config)
    assert done.returncode == 1
    for text in (
        f"{inp}:2: invalid JSON",
        f"{inp}:4: unknown field 'promt'",
        f"{inp}:5: duplicate id (first on line 1)",
        f"{inp}:6: messages[0] must be",
        f'{inp}:7: needs a "prompt" or "messages"',
        "2 succeeded, 0 failed, 5 malformed lines skipped",
    ):
        assert text in done.stderr
    assert ":3:" not in done.stderr  # blank lines are fine
    assert sorted(r["id"] for r in _lines(out)) == [1, 8]
    assert done.stdout == ""


def test_batch_input_errors(config: str, tmp_path: pathlib.Path) -> None:
    missing = run("batch", str(tmp_path / "none.jsonl"), "-o", "x.jsonl", "--config", config)
    assert missing.returncode == 2 and "no such input file" in missing.stderr
    inp = tmp_path / "in.jsonl"
    _write_jsonl(inp, [{"prompt": "x"}])
    same = run("batch", str(inp), "-o", str(inp), "--config", config)
    assert same.returncode == 2 and "must not be the input file" in same.stderr
    zero = run("batch", str(inp), "-o", "x.jsonl", "--config", config, "--concurrency", "0")
    assert zero.returncode == 2 and "expected a positive integer" in zero.stderr
    nowhere = run("batch", str(inp), "-o", str(tmp_path / "no" / "o.jsonl"), "--config", config)
    assert nowhere.returncode == 2 and "no such directory" in nowhere.stderr


@pytest.fixture
def slow(tmp_path: pathlib.Path) -> Iterator[tuple[Emulator, str, pathlib.Path]]:
    """A slow emulator, its config and an input of 24 requests."""
    with emulator_in_thread("openai", api_keys={CANARY}, latency_ms=250) as emu:
        cfg = tmp_path / "slow.toml"
        cfg.write_text(
            '[[instances]]\nprovider = "openai"\nmodel = "m"\n'
            f'api_key = "${{FLYLLM_TEST_KEY}}"\nbase_url = "{emu.base_url}"\n'
        )
        inp = tmp_path / "in.jsonl"
        _write_jsonl(inp, [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(24)])
        yield emu, str(cfg), inp


def _start_batch(cfg: str, inp: pathlib.Path, out: pathlib.Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flyllm.cli", "batch", str(inp), "-o", str(out), "--config", cfg,
         "--concurrency", "3"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_lines(
    proc: subprocess.Popen[str], out: pathlib.Path, n: int, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} lines in {out}; exit code {proc.poll()}")


def _assert_each_id_once(out: pathlib.Path, n: int) -> None:
    records = _lines(out)
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(n))
    assert all(r["success"] for r in records)


def test_batch_resumes_after_kill_9(
    slow: tuple[Emulator, str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    emu, cfg, inp = slow
    out = tmp_path / "out.jsonl"
    proc = _start_batch(cfg, inp, out)
    try:
        _wait_for_lines(proc, out, 4)
    finally:
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=10)
    _check_secret(stdout, stderr)
    assert proc.returncode == -signal.SIGKILL
    first = _lines(out)  # every line whole: nothing half-written
    assert 4 <= len(first) < 24
    with out.open("ab") as f:  # what a crash in the middle of a write would leave
        f.write(b'{"id": "q23", "success": tr')
    emu.set_latency(latency_ms=0)
    done = run("batch", str(inp), "-o", str(out), "--config", cfg)
    assert done.returncode == 0, done.stderr
    assert "dropped a torn last line" in done.stderr
    assert f"{24 - len(first)} succeeded, 0 failed, {len(first)} already done" in done.stderr
    _assert_each_id_once(out, 24)


def test_batch_ctrl_c_writes_what_finished(
    slow: tuple[Emulator, str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    emu, cfg, inp = slow
    out = tmp_path / "out.jsonl"
    proc = _start_batch(cfg, inp, out)
    try:
        _wait_for_lines(proc, out, 2)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    _check_secret(stdout, stderr)
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert "interrupted: run the same command again to resume" in stderr
    written = _lines(out)
    assert f"{len(written)} succeeded" in stderr  # in-flight requests finished and were written
    assert len(written) < 24
    emu.set_latency(latency_ms=0)
    assert run("batch", str(inp), "-o", str(out), "--config", cfg).returncode == 0
    _assert_each_id_once(out, 24)


def test_a_second_batch_on_the_same_output_is_refused(
    slow: tuple[Emulator, str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    emu, cfg, inp = slow
    out = tmp_path / "out.jsonl"
    proc = _start_batch(cfg, inp, out)
    try:
        _wait_for_lines(proc, out, 2)
        second = run("batch", str(inp), "-o", str(out), "--config", cfg)
    finally:
        stdout, stderr = proc.communicate(timeout=20)
    _check_secret(stdout, stderr)
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr == (
        f"flyllm: {out}: another flyllm batch run is writing this output; wait for it to "
        "end or stop it, or write to another file\n"
    )
    assert proc.returncode == 0, stderr
    _assert_each_id_once(out, 24)
    assert emu.stats()["requests"] == 24  # nothing asked twice


# -- config check ------------------------------------------------------------------------------


def test_config_check(config: str) -> None:
    text = run("config", "check", config)
    assert text.returncode == 0, text.stderr
    assert text.stderr == ""
    assert text.stdout.startswith(f"{config}: OK\n")
    assert re.search(r"#0\s+oa\s+openai\s+gpt-4o-mini\s+tasks: qa, summary", text.stdout)
    assert re.search(r"#1\s+an\s+anthropic\s+claude-sonnet-4-5\s+tasks: summary", text.stdout)
    as_json = run("config", "check", config, "--json")
    info = json.loads(as_json.stdout)
    assert [
        (i["id"], i["name"], i["provider"], i["model"], i["tasks"]) for i in info["instances"]
    ] == [
        (0, "oa", "openai", "gpt-4o-mini", ["qa", "summary"]),
        (1, "an", "anthropic", "claude-sonnet-4-5", ["summary"]),
    ]
    assert [t["name"] for t in info["tasks"]] == ["summary", "qa"]
    assert info["options"] == {"max_attempts": 2}


def test_config_check_masks_secrets_in_urls(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pw-" + CANARY[::-1]
    monkeypatch.setenv("REDIS_SECRET", secret)
    path = tmp_path / "flyllm.toml"
    path.write_text(
        # anthropic: its key travels in x-api-key, so URL credentials may go beside it (with
        # OpenAI's Authorization header they are refused at set-up)
        'state = "redis://:${REDIS_SECRET}@127.0.0.1:1/0"\n[[instances]]\nprovider = "anthropic"\n'
        'model = "m"\napi_key = "k"\nbase_url = "http://u:${REDIS_SECRET}@127.0.0.1:9"\n'
    )
    for args in (["config", "check", str(path)], ["config", "check", str(path), "--json"]):
        assert main(args) == 0
        out, err = capsys.readouterr()
        assert secret not in out + err
        assert "redis://***@127.0.0.1:1/0" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("redis://", "postgres://"))
    assert main(["config", "check", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert secret not in out + err and "postgres://***@127.0.0.1:1/0" in err


def test_foreseeable_failures_are_one_line_errors(
    tmp_path: pathlib.Path,
    config: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYLLM_TEST_KEY", CANARY)
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n" + '{"id": 1, "success": true}\n')
    folder = tmp_path / "folder"
    folder.mkdir()
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "x"}\n')
    cases = [
        (["usage", str(tmp_path / "missing.jsonl")], 2, "no such file"),
        (["usage", str(folder)], 2, "no such file"),
        (["usage", "--state", "http://127.0.0.1:1/0"], 2, "invalid Redis URL"),
        (["config", "check", str(folder / "x.toml")], 2, "cannot read the config file"),
        (["config", "check", str(folder)], 2, "unsupported config format"),
        (["ask", "hi", "--config", str(tmp_path / "none.toml")], 2, "cannot read"),
        (["batch", str(inp), "-o", str(folder), "--config", config], 1, "Is a directory"),
    ]
    for args, code, fragment in cases:
        returned = main(args)
        out, err = capsys.readouterr()
        assert returned == code, (args, err)
        assert fragment in err and err.count("\n") == 1 and out == "", (args, err)
    assert main(["usage", str(deep), "--json"]) == 0  # an unreadable line, skipped
    out, err = capsys.readouterr()
    assert json.loads(out)["total"]["requests"] == 1 and "1 unreadable line(s)" in err


def test_ask_with_stdin_not_utf8_is_a_usage_error(config: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flyllm.cli", "ask", "-", "--config", config],
        env=_env(PYTHONIOENCODING="utf-8"),
        input=b"caf\xe9\n",
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr == b"flyllm: the prompt on stdin is not UTF-8 text\n"


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for args, fragment in (
        ([], "ask"),
        (["ask"], "--stream"),
        (["batch"], "the last line of an id wins"),
        (["usage"], "per provider"),
        (["config", "check"], "never"),
    ):
        with pytest.raises(SystemExit) as info:
            main([*args, "--help"])
        assert info.value.code == 0
        assert fragment in capsys.readouterr().out


# -- the batch files ---------------------------------------------------------------------------


def test_parse_line() -> None:
    item = parse_line('{"messages": [{"role": "user", "content": "hi"}], "max_attempts": 2}', 9)
    assert item.id == 9 and item.line == 9
    assert item.request.messages == [Message("user", "hi")]
    assert item.request.max_attempts == 2
    for text, message in (
        ("[1]", "expected a JSON object"),
        ('{"id": true, "prompt": "x"}', "id must be a string or an integer"),
        ('{"prompt": 3}', "prompt must be a string"),
        ('{"prompt": "x", "params": [1]}', "params must be a JSON object"),
        ('{"messages": "hi"}', "messages must be a list"),
    ):
        with pytest.raises(BatchInputError, match=re.escape(message)):
            parse_line(text, 1)


def test_open_output_completes_a_whole_record_without_newline(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": 1, "success": true}\n{"id": 2, "success": false}')
    state = open_output(str(out))
    assert state.repaired is not None and "completed" in state.repaired
    assert out.read_bytes().endswith(b"false}\n")
    assert (state.succeeded, state.failed) == ({"1"}, {"2"})
    out.write_bytes(b'{"id": 1, "success": true}\nnot json\n{"id": 1, "success": false}\n')
    state = open_output(str(out))
    assert (state.succeeded, state.failed, state.unreadable_lines) == (set(), {"1"}, [2])
    assert [n for n, r in read_results(str(out)) if r is None] == [2]


def test_usage_table_prices() -> None:
    rows = [UsageRow("openai", "gpt-4o-mini", 2, 0, 10, 20, 30), UsageRow("-", "-", 1, 1)]

    def price(provider: str, model: str, usage: Usage) -> float | None:
        return usage.total_tokens * 0.001 if provider == "openai" else None

    table = format_usage_rows(rows, cost=price)
    assert "Cost (USD)" in table.splitlines()[1]
    assert re.search(r"gpt-4o-mini\s+2\s+0\s+10\s+20\s+30\s+0\.030000$", table, re.M)
    assert re.search(r"-\s+-\s+1\s+1\s+0\s+0\s+0\s+unknown$", table, re.M)
    assert re.search(r"TOTAL\s+3\s+1\s+10\s+20\s+30\s+0\.030000\+$", table, re.M)
    assert "Cost" not in format_usage_rows(rows)
    assert bundled_cost("-", "-", Usage(1, 1, 2)) is None
    known = bundled_cost("openai", "gpt-4o-mini", Usage(1_000_000, 0, 1_000_000))
    assert known is None or known > 0  # None only when genai-prices is not installed


def test_usage_tables_strip_control_characters() -> None:
    from flyllm._display import table_cell, terminal_text
    from flyllm.usage import InstanceUsage, format_usage_table

    nasty = "gpt\x1b[2J\x1b]0;title\x07-4o\x9b31m\r\n\x00\x7f\tend"
    assert terminal_text(nasty) == "gpt-4o\n\tend"
    assert terminal_text("plain, ünïcode ✓\n") == "plain, ünïcode ✓\n"
    assert table_cell(nasty) == "gpt-4o end"
    control = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
    batch = format_usage_rows([UsageRow("openai", nasty, 1, 0, 1, 2, 3)])
    instances = format_usage_table([InstanceUsage(0, "n", "openai" + nasty, nasty, 1, 2, 3, 1, 0)])
    for table in (batch, instances):
        assert not control.search(table) and "gpt-4o end" in table


def test_wait_line_uses_the_events_message_when_it_has_one() -> None:
    from types import SimpleNamespace
    from typing import cast

    from flyllm import LlmManager
    from flyllm.cli.ask import _wait_line
    from flyllm.observe.events import Event

    manager = LlmManager()
    told = SimpleNamespace(kind="wait", wait=2.0, reason="cooldown", time=0.0, message="oa: 2 s")
    assert _wait_line(manager, cast(Event, told)) == "flyllm: oa: 2 s"
    capacity = Event(kind="wait", request_id=1, time=time.time(), wait=30.0, reason="capacity")
    line = _wait_line(manager, capacity)
    assert line.startswith("flyllm: waiting up to 30.0 s (capacity) until ")
    assert line.endswith(": every instance is at its limits")
