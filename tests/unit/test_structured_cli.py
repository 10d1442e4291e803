"""Structured output on the ways in: a batch line's ``response_format`` and the output line's
``parsed``; ``flyllm ask --json-schema FILE``; pydantic an optional extra only."""

from __future__ import annotations

import ast
import io
import json
import pathlib
import sys
from typing import Any

import pydantic
import pytest

import flyllm
from flyllm import JsonSchema, LlmResponse
from flyllm.cli.ask import MAX_SCHEMA_BYTES, schema_file
from flyllm.cli.batchfile import BatchInputError, parse_line, response_record
from flyllm.cli.batchrun import run_batch
from flyllm.cli.main import main
from tests.unit.test_run_tools import answer
from tests.unit.test_structured_engine import GOOD, INVOICE, managed

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

SCHEMA = dict(INVOICE.schema)
INVOICE_ABLE = frozenset({"structured_output"})


def line(**fields: Any) -> str:
    return json.dumps({"prompt": "Extract: 12.50 EUR", **fields})


def test_a_batch_line_may_carry_a_response_format() -> None:
    loose = parse_line(line(response_format="json"), 1).request
    assert loose.response_format == "json"
    named = parse_line(line(response_format={"name": "invoice", "schema": SCHEMA}), 2).request
    assert named.response_format == JsonSchema("invoice", SCHEMA, True)
    full = {"name": "invoice", "schema": SCHEMA, "strict": False, "description": "fields"}
    assert parse_line(line(response_format=full), 3).request.response_format == JsonSchema(
        "invoice", SCHEMA, False, description="fields"
    )
    for bad in ("xml", {"schema": SCHEMA}, {"name": "x", "schema": {}, "extra": 1}, [SCHEMA]):
        with pytest.raises(BatchInputError, match='response_format must be "json" or'):
            parse_line(line(response_format=bad), 4)


def test_the_output_line_records_parsed() -> None:
    plain = response_record(LlmResponse("hi", True))
    assert "parsed" not in plain  # lines without a response_format keep their shape
    value: dict[str, Any] = {"total": 12.5, "currency": "EUR"}
    assert response_record(LlmResponse(GOOD, True, parsed=value))["parsed"] == value

    class Invoice(pydantic.BaseModel):
        total: float
        currency: str

    typed = response_record(LlmResponse(GOOD, True, parsed=Invoice(**value)), "x")
    assert json.loads(json.dumps(typed))["parsed"] == value


async def test_a_batch_with_response_formats(tmp_path: pathlib.Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    schema = {"name": "invoice", "schema": SCHEMA}
    rows = [
        line(id="schema", response_format=schema),
        line(id="any", response_format="json"),
        line(id="wrong", response_format=schema),
        line(id="not-an-object", response_format={"name": "x", "schema": {"type": "array"}}),
    ]
    inp.write_text("\n".join(rows) + "\n")
    # one instance, answers in line order: the wrong line fails all three of its attempts
    manager, _ = managed([answer(GOOD), answer('{"a": 1}')] + [answer("no")] * 3, [INVOICE_ABLE])
    async with manager:
        report = await run_batch(manager, str(inp), str(out), concurrency=1, err=io.StringIO())
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert (report.succeeded, report.failed) == (2, 2)
    assert records["schema"]["parsed"] == {"total": 12.5, "currency": "EUR"}
    assert records["any"]["parsed"] == {"a": 1}
    assert records["wrong"]["error_kind"] == "structured_output"
    assert "parsed" not in records["wrong"]
    assert records["not-an-object"]["error_kind"] == "invalid_request"
    assert "must describe an object" in records["not-an-object"]["error"]


def test_json_schema_files(tmp_path: pathlib.Path) -> None:
    bare = tmp_path / "my invoice.json"
    bare.write_text(json.dumps(SCHEMA))
    assert schema_file(str(bare)) == JsonSchema("my_invoice", SCHEMA)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"name": "invoice", "schema": SCHEMA, "strict": False}))
    assert schema_file(str(named)) == JsonSchema("invoice", SCHEMA, False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{oops", "not a JSON file"),
        ("[1, 2]", "expected a JSON Schema object"),
        ('{"name": "x", "schema": {}, "other": 1}', 'response_format must be "json"'),
        (" " * (MAX_SCHEMA_BYTES + 1), "larger than"),
    ],
)
def test_bad_json_schema_files_are_usage_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    config = tmp_path / "none.toml"  # never read: the schema is checked first
    assert main(["ask", "hi", "--json-schema", str(path), "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_pydantic_is_an_optional_extra_never_imported_by_the_library() -> None:
    root = pathlib.Path(flyllm.__file__).parent
    project = tomllib.loads((root.parents[1] / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["pydantic"] == ["pydantic>=2"]
    assert not any("pydantic" in d for d in project["dependencies"])
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] == "pydantic" for n in names), path
