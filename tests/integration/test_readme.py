"""Every Python example in the README runs: against emulators, through the SDKs' base-URL
environment variables, so the README's code stays exactly what a user would paste."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack

from tests.integration.conftest import emulator_in_thread

README = pathlib.Path(__file__).parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
ENV = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "google": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
    "mistral": ("MISTRAL_API_KEY", "MISTRAL_BASE_URL"),
}


def test_readme_examples_run(tmp_path: pathlib.Path, redis_url: str) -> None:
    assert len(BLOCKS) >= 2
    shutil.copytree(README.parent / "examples", tmp_path / "examples")  # paths the blocks use
    env = dict(os.environ, METRICS_PORT="0", REDIS_URL=redis_url)
    with ExitStack() as stack:
        for provider, (key_var, url_var) in ENV.items():
            emu = stack.enter_context(emulator_in_thread(provider))
            env[key_var] = f"readme-{provider}-key"
            env[url_var] = emu.base_url
        outputs = ""
        for block in BLOCKS:
            done = subprocess.run(
                [sys.executable, "-c", block],
                env=env,
                cwd=tmp_path,  # files the examples write stay out of the repository
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip(), block
            outputs += done.stdout + done.stderr
    assert "readme-" not in outputs  # no key in any example's output
