"""``flyllm demo`` (what ``make demo`` runs) works end to end: the batch, the stream, the tables
and the tool-calling conversation whose steps land on different providers."""

from __future__ import annotations

import re

import pytest

from flyllm.cli.demo import run_demo


def test_the_demo_runs_and_its_tool_conversation_crosses_providers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_demo(n_requests=5) == 0
    out, err = capsys.readouterr()
    assert "5/5 succeeded" in out
    assert "Tool calling" in out
    steps = re.findall(r"^  (\w+)/\S+ +(asks|answers):", out, re.M)
    assert len(steps) == 4  # two questions, each a call step and an answer step
    assert len({provider for provider, _ in steps}) >= 3  # the steps moved between providers
    assert "get_weather -> " in out and "get_time -> " in out
    assert out.count("Tool results:") == 2  # the results reached the model both times
    assert "failing over" in err and "demo-" not in out + err  # no key shown
