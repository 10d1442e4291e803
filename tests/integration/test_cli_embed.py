"""``flyllm embed`` in a subprocess against the emulator on loopback: every id embedded once
after a kill -9 and a resume, with the vectors of a clean run; Ctrl-C drains and exits 130; a
failed input is a failed line; base64 vectors are the float32 bytes of the JSON ones; input
lines checked; a second writer refused; the key never in any output.

Every subprocess costs about a second of interpreter start: the tests run as few as they can."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import io
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from typing import Any

import pytest

from flyllm import LlmManager
from flyllm.cli import main
from flyllm.cli.batchfile import BatchInputError
from flyllm.cli.batchrun import OutputInUseError, run_batch
from flyllm.cli.embed import embed_kind, parse_embed_line, vector_base64, vector_json
from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.integration.conftest import emulator_in_thread

CANARY = "-".join(["sk", "embed", "cli", "canary", "5a5a"])
MODEL = "text-embedding-3-small"
N = 24
CONFIG = """
[tasks.embed]

[[instances]]
provider = "openai"
model = "{model}"
api_key = "${{FLYLLM_TEST_KEY}}"
base_url = "{url}"
tasks = ["embed"]
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLYLLM_CONFIG", "FLYLLM_LOG")}
    env["FLYLLM_TEST_KEY"] = CANARY
    return env


@pytest.fixture
def setup(tmp_path: pathlib.Path) -> Iterator[tuple[Emulator, str, pathlib.Path]]:
    """A slow emulator (at most 40 words a text), its config and an input of 24 texts."""
    with emulator_in_thread("openai", api_keys={CANARY}, latency_ms=250, context_window=40) as emu:
        cfg = tmp_path / "embed.toml"
        cfg.write_text(CONFIG.format(model=MODEL, url=emu.base_url))
        inp = tmp_path / "texts.jsonl"
        rows = [{"id": f"t{i}", "text": f"text number {i} about {'x' * i}"} for i in range(N)]
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        yield emu, str(cfg), inp


def _command(cfg: str, inp: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flyllm.cli", "embed", str(inp), str(out), "--task", "embed",
            "--config", cfg, *extra]  # fmt: skip


def run(*command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=60)
    assert CANARY not in done.stdout + done.stderr
    return done


def interrupted(
    cfg: str, inp: pathlib.Path, out: pathlib.Path, sig: signal.Signals, after: int
) -> tuple[int, str]:
    """A run of 2 texts a request, 2 at once, sent ``sig`` once ``after`` lines are written;
    its exit code and stderr."""
    command = _command(cfg, inp, out, "--batch-size", "2", "--max-concurrency", "2")
    proc = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (out.exists() and out.read_bytes().count(b"\n") >= after):
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            time.sleep(0.02)
    finally:
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=10)
    assert CANARY not in stdout + stderr and stdout == ""
    return proc.returncode, stderr


def lines(path: pathlib.Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the output must end with a whole line"
    return [json.loads(line) for line in raw.splitlines()]


def final_view(path: pathlib.Path) -> dict[Any, dict[str, Any]]:
    """The last line of each id."""
    return {r["id"]: r for r in lines(path)}


def as_floats(record: dict[str, Any]) -> list[float]:
    if record["encoding"] == "base64":
        return list(array("f", base64.b64decode(record["vector"])))
    return list(array("f", record["vector"]))  # JSON numbers read back as float32


def test_embed_resumes_after_kill_9_with_every_id_once_and_a_clean_runs_vectors(
    setup: tuple[Emulator, str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    emu, cfg, inp = setup
    out = tmp_path / "vectors.jsonl"
    code, _ = interrupted(cfg, inp, out, signal.SIGKILL, 4)
    assert code == -signal.SIGKILL
    first = lines(out)  # every line whole
    assert 4 <= len(first) < N
    emu.set_latency(latency_ms=0)
    resumed = run(*_command(cfg, inp, out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{N - len(first)} succeeded, 0 failed, {len(first)} already done" in resumed.stderr
    records = lines(out)
    assert sorted(r["id"] for r in records) == sorted(f"t{i}" for i in range(N))  # once each
    assert all(r["success"] and r["encoding"] == "float" for r in records)

    clean = tmp_path / "clean.jsonl"
    done = run(*_command(cfg, inp, clean, "--vectors", "base64"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    want = final_view(clean)
    got = final_view(out)
    assert set(got) == set(want)
    for item_id, record in got.items():
        assert want[item_id]["encoding"] == "base64"
        assert as_floats(record) == as_floats(want[item_id])  # float32 exact either way
        assert record["dimensions"] == 1536 and record["model"] == MODEL
    texts = {json.loads(x)["id"]: json.loads(x)["text"] for x in inp.read_text().splitlines()}
    sample = as_floats(got["t5"])
    reference = vector(texts["t5"], MODEL)
    assert max(abs(a - b) for a, b in zip(sample, reference, strict=True)) < 1e-6


def test_embed_ctrl_c_drains_and_exits_130(
    setup: tuple[Emulator, str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    emu, cfg, inp = setup
    out = tmp_path / "vectors.jsonl"
    code, stderr = interrupted(cfg, inp, out, signal.SIGINT, 2)
    assert code == 130, stderr
    assert "interrupted: run the same command again to resume" in stderr
    written = lines(out)
    assert f"flyllm embed: {len(written)} succeeded" in stderr  # in flight: finished, written
    assert len(written) < N and len(written) % 2 == 0  # whole groups only
    emu.set_latency(latency_ms=0)
    assert run(*_command(cfg, inp, out)).returncode == 0
    assert sorted(final_view(out)) == sorted(f"t{i}" for i in range(N))


def test_a_failed_input_is_a_failed_line_and_resume_retries_it(
    setup: tuple[Emulator, str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    emu, cfg, _ = setup
    emu.set_latency(latency_ms=0)
    inp = tmp_path / "mixed.jsonl"
    rows = [
        {"id": 1, "text": "a short text"},
        {"id": 2, "text": " ".join(["word"] * 60)},  # over the emulator's 40 words
        {"id": 3, "text": ""},
        {"text": "no id: the line number"},
        {"id": 1, "text": "a repeated id"},
        {"id": 5, "txt": "a typo"},
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    out = tmp_path / "vectors.jsonl"
    done = run(*_command(cfg, inp, out))
    assert done.returncode == 1 and done.stdout == ""
    assert f"{inp}:5: duplicate id (first on line 1)" in done.stderr
    assert f"{inp}:6: unknown field 'txt'; valid fields: id, text" in done.stderr
    assert f"{inp}:7: invalid JSON" in done.stderr
    assert "2 succeeded, 2 failed, 3 malformed lines skipped" in done.stderr
    view = final_view(out)
    assert set(view) == {1, 2, 3, 4}
    assert view[1]["success"] and view[4]["success"]
    assert view[2]["error_kind"] == "context_length" and view[2]["vector"] is None
    assert view[3]["error_kind"] == "invalid_request" and "empty" in view[3]["error"]
    again = run(*_command(cfg, inp, out, "--skip-failed"))
    assert "0 succeeded, 0 failed, 4 already done" in again.stderr
    retried = run(*_command(cfg, inp, out))
    assert "0 succeeded, 2 failed, 2 already done" in retried.stderr
    assert len(lines(out)) == 6


def test_a_second_embed_on_the_same_output_is_refused(tmp_path: pathlib.Path) -> None:
    """The runner's lock, taken before anything is read or sent (here with a manager that
    could send nothing); ``flyllm batch``'s subprocess test covers the lock across processes."""
    inp, out = tmp_path / "texts.jsonl", tmp_path / "vectors.jsonl"
    inp.write_text('{"id": 1, "text": "x"}\n')
    fd = os.open(out, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds it
        job = run_batch(
            LlmManager(), str(inp), str(out), concurrency=1, err=io.StringIO(),
            kind=embed_kind("embed"),
        )  # fmt: skip
        with pytest.raises(OutputInUseError, match="another flyllm embed run is writing"):
            asyncio.run(job)
    finally:
        os.close(fd)
    assert out.read_bytes() == b""


# -- the file formats ----------------------------------------------------------------------------


def test_parse_embed_line() -> None:
    item = parse_embed_line(b'{"id": "a", "text": "hello"}', 3)
    assert (item.id, item.line, item.text) == ("a", 3, "hello")
    assert parse_embed_line('{"text": ""}', 9).id == 9  # empty: embedded as a failure
    for raw, message in (
        ("[1]", "expected a JSON object"),
        ('{"id": true, "text": "x"}', "id must be a string or an integer"),
        ('{"id": 1}', 'needs a "text" (a string)'),
        ('{"id": 1, "text": 7}', 'needs a "text" (a string)'),
        ('{"id": 1, "text": "x", "task": "t"}', "unknown field 'task'"),
        (b'{"text": "\xff"}', "not UTF-8"),
        ('{"text": NaN}', "invalid JSON"),
        ("[" * 100_000, "invalid JSON"),
    ):
        with pytest.raises(BatchInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_embed_line(raw, 1)


def test_vector_encodings_round_trip_float32_exactly() -> None:
    values = array("f", [0.1, -1.5e-8, 3.4e38, 1 / 3, 0.0, -2.0])
    as_json = vector_json(values)
    assert array("f", json.loads(json.dumps(as_json))) == values
    assert max(len(repr(x)) for x in as_json) <= 16  # 9 significant digits, not 17
    raw = base64.b64decode(vector_base64(values))
    assert raw == struct.pack("<6f", *values)
    assert vector_base64([1.0]) == base64.b64encode(b"\x00\x00\x80\x3f").decode()  # little-endian


def test_help_documents_the_line_formats(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["embed", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for fragment in ('{"id": ..., "text": "..."}', "little-endian float32", "last line of an id"):
        assert fragment in text
