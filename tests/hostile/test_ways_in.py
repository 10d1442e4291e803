"""Hostile input through flyllm's ways in: config files (YAML bombs, absurd nesting), batch
input lines, two batch runs on one output, and the emulator's control API. Each case runs
inside a time and memory budget."""

from __future__ import annotations

import pathlib

import pytest

from flyllm import ConfigurationError
from flyllm.cli import main
from flyllm.config import read_config
from tests.hostile.conftest import budget

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
