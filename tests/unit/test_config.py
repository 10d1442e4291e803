"""Config files: TOML and YAML build the same manager as code; ${VAR} substitution; every
error names the file, the key path (and the line where the format gives one); keys never
appear in messages."""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any

import pytest

from flyllm import ConfigurationError, LlmManager, ProviderType, RetryPolicy, TaskDefinition
from flyllm._display import mask_urls
from flyllm.config.loader import load_config, read_config
from flyllm.routing.instance import LlmInstance
from flyllm.routing.resilience import BreakerPolicy

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "flyllm.toml"
KEY = "sk-config-secret-7e57"
ENV = {"OPENAI_KEY": KEY, "ANTHROPIC_KEY": "k-an"}

TOML = """
strategy = "round_robin"
max_attempts = 4
read_timeout = 30

[retry_policy]
base = 0.5

[tasks.summary]
parameters = { max_tokens = 500, temperature = 0.3 }

[tasks.code]
parameters = { max_tokens = 2000 }
provider_params = { anthropic = { top_k = 40 } }
fallback = ["summary"]

[[instances]]
provider = "openai"
model = "gpt-4o-mini"
api_key = "${OPENAI_KEY}"
tasks = ["summary", "code"]
base_url = "http://127.0.0.1:9/v1"
weight = 2
headers = { OpenAI-Organization = "org-1" }

[[instances]]
provider = "anthropic"
name = "claude"
model = "claude-sonnet-4-5"
api_key = "${ANTHROPIC_KEY}"
tasks = ["code"]
enabled = false
parameters = { temperature = 0.2 }
"""

YAML = """
strategy: round_robin
max_attempts: 4
read_timeout: 30
retry_policy:
  base: 0.5
tasks:
  summary:
    parameters: {max_tokens: 500, temperature: 0.3}
  code:
    parameters: {max_tokens: 2000}
    provider_params: {anthropic: {top_k: 40}}
    fallback: [summary]
instances:
  - provider: openai
    model: gpt-4o-mini
    api_key: ${OPENAI_KEY}
    tasks: [summary, code]
    base_url: http://127.0.0.1:9/v1
    weight: 2
    headers: {OpenAI-Organization: org-1}
  - provider: anthropic
    name: claude
    model: claude-sonnet-4-5
    api_key: ${ANTHROPIC_KEY}
    tasks: [code]
    enabled: false
    parameters: {temperature: 0.2}
"""

OPENAI = """
[[instances]]
provider = "openai"
model = "gpt-4o-mini"
api_key = "${OPENAI_KEY}"
"""


def _write(tmp_path: pathlib.Path, text: str, name: str = "flyllm.toml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _snapshot(instance: LlmInstance) -> dict[str, Any]:
    return {
        "name": instance.name,
        "provider": instance.provider_type,
        "endpoint": instance.endpoint,
        "tasks": instance.tasks,
        "enabled": instance.enabled,
        "weight": instance.weight,
        "parameters": instance.parameters,
    }


def _by_hand() -> LlmManager:
    summary = TaskDefinition("summary", {"max_tokens": 500, "temperature": 0.3})
    code = TaskDefinition(
        "code", {"max_tokens": 2000}, {"anthropic": {"top_k": 40}}, fallback=("summary",)
    )
    manager = LlmManager("round_robin", 4, read_timeout=30, retry_policy=RetryPolicy(base=0.5))
    manager.add_provider(
        ProviderType.OPENAI, KEY, "gpt-4o-mini", [summary, code], base_url="http://127.0.0.1:9/v1",
        weight=2, headers={"OpenAI-Organization": "org-1"},
    )  # fmt: skip
    manager.add_provider(
        "anthropic", "k-an", "claude-sonnet-4-5", [code], False, name="claude",
        parameters={"temperature": 0.2},
    )  # fmt: skip
    return manager


@pytest.mark.parametrize(("name", "text"), [("flyllm.toml", TOML), ("flyllm.yaml", YAML)])
def test_file_builds_the_same_manager_as_code(tmp_path: pathlib.Path, name: str, text: str) -> None:
    loaded = load_config(_write(tmp_path, text, name), env=ENV)
    expected = _by_hand()
    assert [_snapshot(i) for i in loaded._all] == [_snapshot(i) for i in expected._all]
    assert loaded.tasks == expected.tasks
    assert type(loaded.strategy) is type(expected.strategy)
    assert (loaded.max_attempts, loaded.read_timeout) == (4, 30.0)
    assert loaded.retry_policy.base == 0.5


def test_from_config_reads_the_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hasattr(LlmManager, "from_config")
    monkeypatch.setenv("OPENAI_KEY", KEY)
    manager = LlmManager.from_config(_write(tmp_path, OPENAI))
    assert manager._instance(0).endpoint.api_key == KEY


def test_dataclass_options_take_tables(tmp_path: pathlib.Path) -> None:
    text = "[breaker]\nfailure_threshold = 2\ncooldown = 1.5\n" + OPENAI
    manager = load_config(_write(tmp_path, text), env=ENV)
    assert manager.breaker_policy == BreakerPolicy(failure_threshold=2, cooldown=1.5)


def test_instance_limits_pass_through(tmp_path: pathlib.Path) -> None:
    # Any add_provider keyword is an instance key, checked against its type hint.
    text = OPENAI + "rpm = 60\nmax_concurrent = 4\n"
    manager = load_config(_write(tmp_path, text), env=ENV)
    assert len(manager.instances()) == 1
    _error(
        tmp_path, OPENAI + 'rpm = "many"\n', "flyllm.toml: instances[0].rpm: expected an integer"
    )


def test_keyless_local_server(tmp_path: pathlib.Path) -> None:
    text = '[[instances]]\nprovider = "openai_compatible"\nmodel = "llama"\n'
    text += 'base_url = "${LOCAL:-http://127.0.0.1:11434/v1}"\n'
    manager = load_config(_write(tmp_path, text), env={})
    assert manager._instance(0).endpoint.base_url == "http://127.0.0.1:11434/v1"


# -- ${VAR} substitution -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-${B}", {"A": "x", "B": "y"}, "pre-x-y"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-}", {}, ""),
        ("${A}", {"A": ""}, ""),
        ("$${A} and $5", {}, "${A} and $5"),
    ],
)
def test_substitution(
    tmp_path: pathlib.Path, value: str, env: dict[str, str], expected: str
) -> None:
    text = OPENAI + f'name = "{value}"\n'
    config = read_config(_write(tmp_path, text), env={**ENV, **env})
    assert config.instances[0].options.get("name") == expected


def test_substitution_reaches_every_string(tmp_path: pathlib.Path) -> None:
    text = '[tasks.t]\nparameters = { stop = ["${S}"] }\n' + OPENAI + 'tasks = ["t"]\n'
    text += 'headers = { X-Team = "${TEAM}" }\n'
    config = read_config(_write(tmp_path, text), env={**ENV, "S": "END", "TEAM": "ml"})
    assert config.tasks[0].parameters == {"stop": ["END"]}
    assert config.instances[0].options["headers"] == {"X-Team": "ml"}


def test_missing_variable_names_it_the_file_and_the_key(tmp_path: pathlib.Path) -> None:
    message = _error(tmp_path, OPENAI, "flyllm.toml: instances[0].api_key:", env={})
    assert "OPENAI_KEY is not set" in message
    assert "${OPENAI_KEY:-default}" in message


def test_bad_reference(tmp_path: pathlib.Path) -> None:
    _error(tmp_path, OPENAI + 'name = "${1x}"\n', "instances[0].name: bad ${...} reference")
    _error(tmp_path, OPENAI + 'name = "${X"\n', "instances[0].name: bad ${...} reference")


# -- errors ------------------------------------------------------------------------------------


def _error(
    tmp_path: pathlib.Path,
    text: str,
    *fragments: str,
    name: str = "flyllm.toml",
    env: dict[str, str] | None = None,
) -> str:
    path = _write(tmp_path, text, name)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, env=ENV if env is None else env)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment.replace("flyllm.toml:", f"{path}:") in message, message
    assert KEY not in message
    return message


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('stratgy = "random"\n' + OPENAI, ["stratgy: unknown key; did you mean 'strategy'?",
                                           "valid keys: strategy, max_attempts"]),
        (OPENAI + 'modle = "x"\n', ["instances[0].modle: unknown key; did you mean 'model'?"]),
        ('[tasks.t]\nparams = {}\n' + OPENAI + 'tasks = ["t"]\n',
         ["tasks.t.params: unknown key; did you mean 'parameters'?", "provider_params"]),
        ("[retry_policy]\nbse = 1\n" + OPENAI, ["retry_policy.bse: unknown key", "base, cap"]),
        ("clock = 1\n" + OPENAI, ["clock: unknown key"]),
        (OPENAI.replace('"openai"', '"opena"'),
         ["instances[0].provider: unknown provider 'opena'", "openai, anthropic, google"]),
        (OPENAI.replace('provider = "openai"\n', ""),
         ["instances[0].provider: expected a provider"]),
        (OPENAI.replace('model = "gpt-4o-mini"\n', ""), ["instances[0].model: expected a model"]),
        ('max_attempts = "3"\n' + OPENAI, ["max_attempts: expected an integer, got a string"]),
        ("max_attempts = 0\n" + OPENAI, ["max_attempts"]),
        ('strategy = "fastest"\n' + OPENAI, ["strategy: unknown strategy 'fastest'"]),
        ("read_timeout = true\n" + OPENAI, ["read_timeout: expected a number, got a boolean"]),
        (OPENAI + 'tasks = ["summary"]\n', ["instances[0].tasks[0]: unknown task 'summary'"]),
        (OPENAI + 'tasks = "summary"\n', ["instances[0].tasks: expected a list"]),
        ("[tasks.lonely]\n" + OPENAI, ["tasks.lonely: no instance serves this task"]),
        ('[tasks.t]\nfallback = ["nope"]\n' + OPENAI + 'tasks = ["t"]\n',
         ["tasks.t.fallback[0]: unknown task 'nope'"]),
        ('[tasks.t]\nprovider_params = { antropic = {} }\n' + OPENAI + 'tasks = ["t"]\n',
         ["tasks.t.provider_params.antropic: unknown provider"]),
        (OPENAI + "headers = { X-Retries = 3 }\n",
         ["instances[0].headers.X-Retries: expected a string, got an integer"]),
        (OPENAI + "weight = -1\n", ["instances[0]: weight must be a number >= 0"]),
        (OPENAI.replace('api_key = "${OPENAI_KEY}"\n', ""),
         ["instances[0].api_key: openai instances need a key", "${OPENAI_API_KEY}"]),
        (OPENAI.replace('api_key = "${OPENAI_KEY}"\n', "").replace('"openai"', '"cohere"'),
         ["instances[0].api_key: cohere instances need a key", "${CO_API_KEY}"]),  # the SDK's name
        ('strategy = "random"\n', ["no instances: add at least one [[instances]] table"]),
        ("instances = 3\n", ["instances: expected a list of tables"]),
        ("tasks = 3\n" + OPENAI, ["tasks: expected a table of tasks"]),
    ],
)  # fmt: skip
def test_validation_errors(tmp_path: pathlib.Path, text: str, fragments: list[str]) -> None:
    _error(tmp_path, text, *fragments)


def test_values_are_never_shown(tmp_path: pathlib.Path) -> None:
    # A key pasted where a number or a table belongs must not end up in the message.
    message = _error(tmp_path, f'max_attempts = "{KEY}"\n' + OPENAI, "expected an integer")
    message += _error(tmp_path, OPENAI + f'headers = {{ Authorization = 7 }}\nname = "{KEY}"\n')
    message += _error(tmp_path, OPENAI + f'api_version = ["{KEY}"]\n', "api_version")
    assert KEY not in message


def test_toml_syntax_error_gives_the_line(tmp_path: pathlib.Path) -> None:
    message = _error(tmp_path, f'strategy = "random"\nmax_attempts = \napi_key = "{KEY}"\n')
    assert message.startswith(f"{tmp_path / 'flyllm.toml'}:2: invalid TOML")


def test_yaml_errors_give_the_line(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "flyllm.yaml")
    message = _error(tmp_path, "instances:\n  - provider: [unclosed\n", name="flyllm.yaml")
    assert message.startswith(f"{path}:3: invalid YAML") or message.startswith(f"{path}:2:")
    text = YAML.replace("provider: anthropic", "provider: antropic")
    message = _error(tmp_path, text, name="flyllm.yaml")
    line = 1 + text.splitlines().index("  - provider: antropic")
    assert message.startswith(f"{path}:{line}: instances[1].provider: unknown provider")
    text = YAML.replace("    enabled: false", "    enabled: false\n    enabled: true")
    message = _error(tmp_path, text, "duplicate key", name="flyllm.yaml")
    assert message.startswith(f"{path}:{text.splitlines().index('    enabled: true') + 1}:")
    message = _error(tmp_path, YAML.replace("max_attempts: 4", "max_attemps: 4"), name="f.yml")
    assert message.startswith(f"{tmp_path / 'f.yml'}:3: max_attemps: unknown key")
    _error(tmp_path, "- 1\n- 2\n", "a table (mapping) at the top level", name="flyllm.yaml")


def test_yaml_needs_pyyaml(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    _error(tmp_path, YAML, "pip install 'flyllm[yaml]'", name="flyllm.yaml")


def test_unreadable_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match=r"flyllm\.ini: unsupported config format"):
        load_config(tmp_path / "flyllm.ini")
    with pytest.raises(ConfigurationError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "latin.toml").write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_config(tmp_path / "latin.toml")


# -- the example config ------------------------------------------------------------------------

EXAMPLE_ENV = {
    "OPENAI_API_KEY": "sk-ex-1",
    "ANTHROPIC_API_KEY": "sk-ex-2",
    "GEMINI_API_KEY": "sk-ex-3",
    "MISTRAL_API_KEY": "sk-ex-4",
}


def test_example_config_loads() -> None:
    manager = load_config(EXAMPLE, env=EXAMPLE_ENV)
    providers = [i.provider_type.value for i in manager._all]
    assert providers == ["openai", "anthropic", "google", "mistral", "openai_compatible"]
    assert [i.endpoint.api_key for i in manager._all[:4]] == list(EXAMPLE_ENV.values())
    assert set(manager.tasks) == {"summary", "code_generation", "qa"}
    assert not manager.instances()[4].enabled


def test_example_config_without_a_key() -> None:
    env = {k: v for k, v in EXAMPLE_ENV.items() if k != "GEMINI_API_KEY"}
    with pytest.raises(ConfigurationError) as info:
        load_config(EXAMPLE, env=env)
    assert str(info.value) == (
        f"{EXAMPLE}: instances[2].api_key: environment variable GEMINI_API_KEY is not set "
        "(set it, or write ${GEMINI_API_KEY:-default} to give a default)"
    )


# -- secrets in URLs ---------------------------------------------------------------------------


def test_mask_url_hides_passwords_and_query_values() -> None:
    secret = "pw-" + KEY[::-1]
    cases = {
        f"redis://:{secret}@127.0.0.1:6379/0": "redis://***@127.0.0.1:6379/0",
        f"rediss://default:{secret}@h:1/2": "rediss://***@h:1/2",
        f"https://{secret}@api.example/v1": "https://***@api.example/v1",
        f"https://api.example/v1?key={secret}&alt=sse#x": "https://api.example/v1?key=***&alt=***",
        "http://127.0.0.1:9/v1": "http://127.0.0.1:9/v1",
        f"unknown state store 'postgres://u:{secret}@h/db': use": (
            "unknown state store 'postgres://***@h/db': use"
        ),
        "no url here: a:b@c": "no url here: a:b@c",
    }
    for text, masked in cases.items():
        assert mask_urls(text) == masked


def test_config_errors_mask_urls(tmp_path: pathlib.Path) -> None:
    secret = "pw-" + KEY[::-1]
    text = f'state = "postgres://user:{secret}@db.example/x"\n' + OPENAI
    message = _error(tmp_path, text, "unknown state store")
    assert secret not in message and "postgres://***@db.example/x" in message


def test_a_bad_redis_url_shows_no_part_of_its_password() -> None:
    from flyllm.routing.redis_state import RedisStore

    secret = "-".join(["pw", "slash", "9a8b7c"])
    with pytest.raises(ConfigurationError) as caught:
        RedisStore(f"redis://:Pa55/{secret}@127.0.0.1:1/0")  # "/" ends redis-py's netloc early
    assert "Pa55" not in str(caught.value) and secret not in str(caught.value)


def _keywords_in_comments(doc: str, start: str, end: str) -> set[str]:
    """The snake_case words the schema's ``# ...`` comments list after ``start``, up to ``end``."""
    block = doc[doc.index(start) : doc.index(end)]
    comments = " ".join(line.split("#", 1)[1] for line in block.splitlines() if "#" in line)
    listed = comments.split("keyword:", 1)[1].split("...", 1)[0]
    return set(re.findall(r"\b[a-z]+(?:_[a-z]+)*\b", listed)) - {"and", "any", "other"}


def test_the_schema_docstring_names_only_real_keywords() -> None:
    import flyllm.config.loader
    from flyllm.config.builder import instance_option_names, manager_option_names

    doc = flyllm.config.loader.__doc__ or ""
    manager = _keywords_in_comments(doc, "strategy = ", "[retry_policy]")
    assert "connect_timeout" in manager and manager <= set(manager_option_names()), manager
    instance = _keywords_in_comments(doc, "[[instances]]", "The manager and")
    assert "base_url" in instance and instance <= set(instance_option_names()), instance
