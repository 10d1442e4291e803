"""Managers from config files and the builder, answering through emulators on loopback."""

from __future__ import annotations

import pathlib

import pytest

from flyllm import GenerationRequest, LlmManager, TaskDefinition
from flyllm.config.builder import LlmManagerBuilder
from flyllm.config.loader import load_config
from tests.integration.conftest import EmulatorFactory, body

KEY = "sk-e2e-config-key"

TOML = """
strategy = "round_robin"
max_attempts = 2

[tasks.summary]
parameters = {{ max_tokens = 7 }}

[tasks.code]
parameters = {{ max_tokens = 9 }}

[[instances]]
provider = "openai"
model = "gpt-4o-mini"
api_key = "${{E2E_KEY}}"
base_url = "{openai}"
tasks = ["summary"]

[[instances]]
provider = "anthropic"
model = "claude-sonnet-4-5"
api_key = "${{E2E_KEY}}"
base_url = "{anthropic}"
tasks = ["summary", "code"]
parameters = {{ temperature = 0.5 }}
"""

YAML = """
strategy: round_robin
max_attempts: 2
tasks:
  summary: {{parameters: {{max_tokens: 7}}}}
  code: {{parameters: {{max_tokens: 9}}}}
instances:
  - {{provider: openai, model: gpt-4o-mini, api_key: "${{E2E_KEY}}", base_url: "{openai}",
     tasks: [summary]}}
  - provider: anthropic
    model: claude-sonnet-4-5
    api_key: ${{E2E_KEY}}
    base_url: {anthropic}
    tasks: [summary, code]
    parameters: {{temperature: 0.5}}
"""


@pytest.mark.parametrize(("name", "template"), [("flyllm.toml", TOML), ("flyllm.yaml", YAML)])
async def test_config_routes_by_task_with_the_keys_from_the_environment(
    emulators: EmulatorFactory, tmp_path: pathlib.Path, name: str, template: str
) -> None:
    oa = await emulators("openai", api_keys={KEY})
    an = await emulators("anthropic", api_keys={KEY})
    path = tmp_path / name
    path.write_text(template.format(openai=oa.base_url, anthropic=an.base_url))
    async with load_config(path, env={"E2E_KEY": KEY}) as manager:
        summaries = await manager.batch_generate(
            [GenerationRequest(prompt=f"summarize {i}", task="summary") for i in range(4)]
        )
        assert all(r.success for r in summaries)
        assert [r.provider for r in summaries] == ["openai", "anthropic"] * 2
        assert all(r.usage.completion_tokens <= 7 for r in summaries)
        code = await manager.generate(GenerationRequest(prompt="write code", task="code"))
    assert code.provider == "anthropic"
    assert body(an)["max_tokens"] == 9
    assert body(an)["temperature"] == 0.5
    assert oa.requests[-1].api_key == KEY
    assert an.requests[-1].api_key == KEY


async def test_from_config(
    emulators: EmulatorFactory, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oa = await emulators("openai")
    path = tmp_path / "flyllm.toml"
    path.write_text(
        f'[[instances]]\nprovider = "openai"\nmodel = "m"\napi_key = "${{E2E_KEY}}"\n'
        f'base_url = "{oa.base_url}"\n'
    )
    monkeypatch.setenv("E2E_KEY", KEY)
    async with LlmManager.from_config(path) as manager:
        response = await manager.generate(GenerationRequest(prompt="hello"))
    assert response.success and response.content


async def test_builder_manager_answers(emulators: EmulatorFactory) -> None:
    oa, mi = await emulators("openai"), await emulators("mistral")
    manager = (
        LlmManagerBuilder()
        .define_task(TaskDefinition("qa", {"max_tokens": 5}))
        .strategy("round_robin")
        .max_attempts(2)
        .add_instance("openai", model="gpt-4o-mini", api_key="k1")
        .base_url(oa.base_url)
        .supports("qa")
        .add_instance("mistral", model="mistral-small-latest", api_key="k2")
        .base_url(mi.base_url)
        .supports("qa")
        .build()
    )
    async with manager:
        responses = await manager.batch_generate(
            [GenerationRequest(prompt=f"q{i}", task="qa") for i in range(4)]
        )
    assert [r.provider for r in responses] == ["openai", "mistral"] * 2
    assert all(r.success and r.usage.completion_tokens <= 5 for r in responses)
