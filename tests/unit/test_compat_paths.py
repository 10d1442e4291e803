"""The import paths users had before the package layout keep working for one release: each old
module gives the very objects of the module it moved to."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

MOVED = {
    "flyllm.events": "flyllm.observe.events",
    "flyllm.metrics": "flyllm.observe.metrics",
    "flyllm.journal": "flyllm.observe.journal",
    "flyllm.strategies": "flyllm.routing.strategies",
    "flyllm.state": "flyllm.routing.state",
    "flyllm.redis_state": "flyllm.routing.redis_state",
    "flyllm.config": "flyllm.config.loader",
}


@pytest.mark.parametrize(("old", "new"), MOVED.items())
def test_an_old_path_gives_the_same_objects(old: str, new: str) -> None:
    before, after = importlib.import_module(old), importlib.import_module(new)
    names = set(after.__all__)
    assert names and names <= set(before.__all__), names - set(before.__all__)
    for name in names:
        assert getattr(before, name) is getattr(after, name), f"{old}.{name}"
    assert "compatibility" in (before.__doc__ or "")


def test_the_names_the_readme_uses_under_old_paths() -> None:
    import flyllm
    from flyllm.events import Event
    from flyllm.journal import Journal
    from flyllm.metrics import PrometheusMetrics
    from flyllm.observe.journal import Journal as NewJournal
    from flyllm.observe.metrics import PrometheusMetrics as NewMetrics
    from flyllm.pricing import ModelPrice
    from flyllm.routing.strategies import Candidate as NewCandidate
    from flyllm.strategies import Candidate

    assert Event is flyllm.Event and ModelPrice is flyllm.ModelPrice
    assert Journal is NewJournal and PrometheusMetrics is NewMetrics
    assert Candidate is NewCandidate is flyllm.Candidate


def test_an_unknown_name_of_the_config_package_is_an_attribute_error() -> None:
    import flyllm.config

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = flyllm.config.nope


def test_the_entry_point_and_python_m_still_run() -> None:
    from flyllm.cli.main import main

    (script,) = entry_points(group="console_scripts", name="flyllm")
    assert script.value == "flyllm.cli:main" and script.load() is main
    out = subprocess.run(
        [sys.executable, "-m", "flyllm.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout) == (0, "flyllm 0.1.0\n"), out.stderr
