"""``flyllm keys``: a new key on stdout once, its table (hash only) on stderr; ``hash``."""

from __future__ import annotations

import io
import sys

import pytest

from flyllm.cli.main import main
from flyllm.server import KeyRing, hash_key, read_gateway_table

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]


def test_create_prints_the_key_once_and_a_table_with_its_hash_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["keys", "create", "team-a", "--tasks", "chat, summary", "--rpm", "60",
                 "--tpm", "20000", "--max-concurrent", "4", "--budget-usd", "12.5",
                 "--budget-period", "day", "--expires", "2099-01-01T00:00:00Z"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    key = out.strip()
    assert out == key + "\n" and key.startswith("fly-") and len(key) > 40
    assert key not in err
    table = read_gateway_table(tomllib.loads(err)["gateway"], "pasted", ["chat", "summary"])
    found = KeyRing(table.keys).lookup(key)
    assert found is not None and found.name == "team-a"
    assert found.sha256 == hash_key(key)
    assert found.tasks == frozenset({"chat", "summary"})
    assert (found.rpm, found.tpm, found.max_concurrent) == (60, 20000, 4)
    assert (found.budget_usd, found.budget_period) == (12.5, "day")
    assert found.expires is not None and found.expires.year == 2099
    main(["keys", "create", "team-a"])
    assert capsys.readouterr().out.strip() != key  # a new key each time


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget-usd", "-1"], "budget_usd: expected a positive number"),
        (["--expires", "tomorrow"], "expires: expected an RFC 3339 time"),
        (["--expires", "2001-01-01T00:00:00Z"], "--expires is in the past"),
    ],
)
def test_create_refuses_bad_values_before_making_a_key(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["keys", "create", "team-a", *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_a_name_with_quotes_stays_one_toml_string(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", 'x"\n[evil]']) == 0
    _, err = capsys.readouterr()
    table = read_gateway_table(tomllib.loads(err)["gateway"], "pasted")
    assert next(iter(table.keys)).name == 'x"\n[evil]'


def test_hash_reads_a_key_on_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "fly-" + "k" * 43
    monkeypatch.setattr(sys, "stdin", io.StringIO(key + "\n"))
    assert main(["keys", "hash"]) == 0
    out, err = capsys.readouterr()
    assert out == hash_key(key) + "\n" and key not in out + err
    for bad in ("", "two keys\n", "x" * 5000):
        monkeypatch.setattr(sys, "stdin", io.StringIO(bad))
        assert main(["keys", "hash"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "expected one key" in err
        assert not bad.strip() or bad.strip()[:20] not in err


def test_keys_without_an_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys"]) == 2
    assert "flyllm keys create NAME" in capsys.readouterr().err
