"""Config files: an LlmManager from a TOML or YAML file.

    manager = load_config("flyllm.toml")

The schema (TOML shown; YAML has the same keys)::

    strategy = "least_recently_used"   # and any other LlmManager() keyword: max_attempts,
    max_attempts = 3                   # connect_timeout, read_timeout, deadline, ...
    [retry_policy]                     # a keyword typed as a dataclass takes a table
    base = 0.5

    [tasks.summary]                    # every TaskDefinition field but name:
    parameters = { max_tokens = 500 }  # parameters, provider_params, fallback, ...
    provider_params = { anthropic = { top_k = 40 } }

    [[instances]]
    provider = "openai"                # a flyllm.ProviderType value (any of the 16) or an
    model = "gpt-4o-mini"              # alias such as "gemini" (see flyllm.providers)
    api_key = "${OPENAI_API_KEY}"      # optional only for providers that need no key
    tasks = ["summary"]                # names of tasks defined above
    # and any add_provider keyword: enabled, base_url, name, weight, parameters,
    # provider_params, headers, api_version, options, ...

The manager and instance keywords accepted are read from ``LlmManager.__init__`` and
``LlmManager.add_provider`` when the file is loaded, so settings added to the manager need no
change here; task keys come from ``TaskDefinition``'s fields. Values are checked against those
signatures' type hints. Unknown keys are errors (a typo must not be silently ignored).

Every string may use ``${VAR}`` (an error naming the variable when unset) and ``${VAR:-default}``
(the default when unset or empty); ``$${`` is a literal ``${``. Errors name the file, the key path
(``flyllm.toml: instances[2].provider``) and the line where the format gives one (TOML syntax
errors; every YAML error), and list what was expected. They never contain values of keys.

A file may hold at most ``MAX_VALUES`` values (counted after YAML aliases are expanded, so a
kilobyte alias bomb is refused, not inflated) nested at most ``MAX_DEPTH`` deep (a YAML anchor
that contains itself nests forever); either is a ConfigurationError naming the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flyllm._display import mask_urls
from flyllm.config.builder import instance_option_names, manager_option_names
from flyllm.errors import ConfigurationError
from flyllm.manager import LlmManager
from flyllm.providers import PROVIDER_NAMES, requires_key, resolve_provider_type, spec_for
from flyllm.routing.strategies import make_strategy
from flyllm.types import ProviderType, TaskDefinition

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "CONFIG_SUFFIXES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "InstanceConfig",
    "ManagerConfig",
    "load_config",
    "read_config",
]

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")
"""The file name endings load_config reads: TOML, and YAML when PyYAML is installed."""

MAX_VALUES = 100_000
"""The most values (tables, lists and scalars) a config file may hold once YAML aliases are
expanded: far above any real config, far below what an alias bomb expands to."""

MAX_DEPTH = 64
"""The deepest a config file's values may nest (a task's JSON schema included)."""

Path = tuple[str | int, ...]
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_INSTANCE_FIXED = ("provider", "model", "api_key", "tasks")


@dataclass(slots=True, frozen=True)
class InstanceConfig:
    """One ``[[instances]]`` entry, checked: ``options`` are add_provider keywords."""

    provider: ProviderType
    model: str
    api_key: str = field(repr=False)
    tasks: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(slots=True, frozen=True)
class ManagerConfig:
    """A config file read and checked, not yet turned into a manager (``build()`` does)."""

    path: str
    options: Mapping[str, Any]
    tasks: tuple[TaskDefinition, ...]
    instances: tuple[InstanceConfig, ...]
    lines: Mapping[Path, int] = field(default_factory=dict, repr=False)
    gateway: Any = field(default=None, repr=False)
    """The ``[gateway]`` table as read (``${VAR}`` substituted), for ``flyllm serve`` to check
    (flyllm.server.settings); None when the file has none. The manager ignores it."""

    def build(self) -> LlmManager:
        """The LlmManager the file describes: tasks defined, instances added in file order."""
        src = _Source(self.path, self.lines)
        try:
            manager = LlmManager(**self.options)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise src.error((), mask_urls(str(exc))) from None
        for task in self.tasks:
            try:
                manager.define_task(task)
            except ConfigurationError as exc:
                raise src.error(("tasks", task.name), mask_urls(str(exc))) from None
        for index, inst in enumerate(self.instances):
            try:
                manager.add_provider(
                    inst.provider, inst.api_key, inst.model, inst.tasks, **inst.options
                )
            except (ConfigurationError, TypeError, ValueError) as exc:
                raise src.error(("instances", index), mask_urls(str(exc))) from None
        return manager


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> LlmManager:
    """The LlmManager a TOML or YAML config file describes (see the module docstring for the
    schema). ``env`` replaces ``os.environ`` for ``${VAR}`` references. Raises
    ConfigurationError naming the file, the key path and, where known, the line."""
    return read_config(path, env=env).build()


def read_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> ManagerConfig:
    """Read and check a config file without building the manager."""
    name = os.fspath(path)
    suffix = os.path.splitext(name)[1].lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigurationError(
            f"{name}: unsupported config format {suffix or '(no extension)'!r}; "
            f"use one of: {', '.join(CONFIG_SUFFIXES)}"
        )
    try:
        with open(name, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{name}: the config file is not UTF-8 text") from None
    data, lines = _parse_toml(name, text) if suffix == ".toml" else _parse_yaml(name, text)
    src = _Source(name, lines)
    if not isinstance(data, dict):
        raise src.error((), "the file must hold a table (mapping) at the top level")
    data = _substitute(src, data, (), os.environ if env is None else env)
    return _read(src, data)


# -- parsing -----------------------------------------------------------------------------------


def _parse_toml(name: str, text: str) -> tuple[Any, dict[Path, int]]:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(name) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        where = f"{name}:{found.group(1)}" if found else name
        raise ConfigurationError(f"{where}: invalid TOML: {message}") from None
    _check_bounds(name, data, _data_children)
    return data, {}


def _parse_yaml(name: str, text: str) -> tuple[Any, dict[Path, int]]:
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise ConfigurationError(
            f"{name}: reading YAML needs PyYAML: pip install 'flyllm[yaml]'"
        ) from None
    loader = _bounded_loader(yaml)(text)
    try:
        node = loader.get_single_node()
        if node is not None:  # before anything walks it: aliases may make it huge or endless
            _check_bounds(name, node, _node_children)
        data = None if node is None else loader.construct_document(node)
    except RecursionError:
        raise _too_deep(name) from None
    except yaml.MarkedYAMLError as exc:
        # Built from the parts, not str(exc): that quotes the file's text, which may hold a key.
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigurationError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{name}: invalid YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is not None:
        _yaml_lines(name, yaml, node, (), lines)
    return data, lines


@functools.cache
def _bounded_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, refusing to compose nodes deeper than MAX_DEPTH (its composer
    recurses once per level: a deep file would end in RecursionError, slowly)."""

    class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise RecursionError
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return BoundedLoader


def _data_children(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        return value.values()
    return value if isinstance(value, list) else ()


def _node_children(node: Any) -> Iterable[Any]:
    value = node.value  # a mapping's: (key, value) pairs; a sequence's: nodes; a scalar's: str
    if not isinstance(value, list):
        return ()
    return [part for item in value for part in (item if isinstance(item, tuple) else (item,))]


def _check_bounds(name: str, root: Any, children: Callable[[Any], Iterable[Any]]) -> None:
    """Walk the values as their expansion would (an alias each time it is used), without
    recursion, and refuse the file past MAX_VALUES values or MAX_DEPTH levels."""
    stack = [(root, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigurationError(
                f"{name}: more than {MAX_VALUES:,} values once YAML aliases are expanded "
                "(an alias bomb?); refusing to read it"
            )
        if depth > MAX_DEPTH:
            raise _too_deep(name)
        stack.extend((child, depth + 1) for child in children(value))


def _too_deep(name: str) -> ConfigurationError:
    return ConfigurationError(
        f"{name}: values nest deeper than {MAX_DEPTH} levels "
        "(or a YAML anchor contains itself); refusing to read it"
    )


def _yaml_lines(name: str, yaml: Any, node: Any, path: Path, out: dict[Path, int]) -> None:
    """Record the line of every key and list item; duplicate keys are errors."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.tag)
            here: Path = (*path, key)
            line = key_node.start_mark.line + 1
            if here in out:
                error = _Source(name, {}).error(here, f"duplicate key (also on line {out[here]})")
                raise error.with_line(line)
            out[here] = line
            _yaml_lines(name, yaml, value_node, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path: Path = (*path, i)
            out[item_path] = item.start_mark.line + 1
            _yaml_lines(name, yaml, item, item_path, out)


class _ConfigError(ConfigurationError):
    """A ConfigurationError whose line can still be set by the code that knows it."""

    def __init__(self, name: str, path: Path, message: str, line: int | None) -> None:
        self.name, self.path, self.message = name, path, message
        super().__init__(self._text(line))

    def _text(self, line: int | None) -> str:
        where = f"{self.name}:{line}" if line else self.name
        key = f" {_fmt(self.path)}:" if self.path else ""
        return f"{where}:{key} {self.message}"

    def with_line(self, line: int) -> _ConfigError:
        self.args = (self._text(line),)
        return self


@dataclass(slots=True, frozen=True)
class _Source:
    """The file's name and, for YAML, the line of each key path: where errors point."""

    name: str
    lines: Mapping[Path, int]

    def error(self, path: Path, message: str) -> _ConfigError:
        line = None
        for n in range(len(path), 0, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                break
        return _ConfigError(self.name, path, message, line)


def _fmt(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{text}" if out else text
    return out


# -- ${VAR} substitution -----------------------------------------------------------------------


def _substitute(src: _Source, value: Any, path: Path, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _expand(src, value, path, env)
    if isinstance(value, dict):
        return {k: _substitute(src, v, (*path, str(k)), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(src, v, (*path, i), env) for i, v in enumerate(value)]
    return value


def _expand(src: _Source, text: str, path: Path, env: Mapping[str, str]) -> str:
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while (start := text.find("$", i)) >= 0:
        out.append(text[i:start])
        if text.startswith("$${", start):
            out.append("${")
            i = start + 3
            continue
        if not text.startswith("${", start):
            out.append("$")
            i = start + 1
            continue
        ref = _REF.match(text, start)
        if ref is None:
            raise src.error(
                path,
                "bad ${...} reference: use ${NAME} or ${NAME:-default} "
                "(NAME: letters, digits, _), or $${ for a literal ${",
            )
        var, default = ref.group(1), ref.group(2)
        value = env.get(var)
        if default is not None and not value:
            value = default
        if value is None:
            raise src.error(
                path,
                f"environment variable {var} is not set "
                f"(set it, or write ${{{var}:-default}} to give a default)",
            )
        out.append(value)
        i = ref.end()
    out.append(text[i:])
    return "".join(out)


# -- checking ----------------------------------------------------------------------------------


def _read(src: _Source, data: dict[str, Any]) -> ManagerConfig:
    hints = _hints(LlmManager.__init__)
    option_names = _settable(manager_option_names(), hints)
    _check_keys(src, data, (), (*option_names, "tasks", "instances", "gateway"))
    options = {
        key: _coerce(src, value, hints.get(key, Any), (key,))
        for key, value in data.items()
        if key in option_names
    }
    if isinstance(options.get("strategy"), str):
        try:
            make_strategy(options["strategy"])
        except ConfigurationError as exc:
            raise src.error(("strategy",), str(exc)) from None
    tasks = _read_tasks(src, data.get("tasks", {}))
    instances = _read_instances(src, data.get("instances"), {t.name for t in tasks})
    served = {name for inst in instances for name in inst.tasks}
    for task in tasks:
        if task.name not in served:
            raise src.error(
                ("tasks", task.name),
                "no instance serves this task: add it to the tasks list of an instance",
            )
    return ManagerConfig(
        src.name, options, tuple(tasks), tuple(instances), src.lines, data.get("gateway")
    )


def _read_tasks(src: _Source, tasks: Any) -> list[TaskDefinition]:
    if not isinstance(tasks, dict):
        raise src.error(("tasks",), f"expected a table of tasks, got {_kind(tasks)}")
    hints = _hints(TaskDefinition)
    init_fields = [f.name for f in dataclasses.fields(TaskDefinition) if f.init]
    allowed = _settable([name for name in init_fields if name != "name"], hints)
    out: list[TaskDefinition] = []
    for name, body in tasks.items():
        path: Path = ("tasks", name)
        if not isinstance(body, dict):
            raise src.error(path, f"expected a table of task settings, got {_kind(body)}")
        _check_keys(src, body, path, allowed)
        kwargs = {k: _coerce(src, v, hints.get(k, Any), (*path, k)) for k, v in body.items()}
        if "provider_params" in kwargs:
            _check_provider_names(src, kwargs["provider_params"], (*path, "provider_params"))
        try:
            out.append(TaskDefinition(name, **kwargs))
        except (TypeError, ValueError) as exc:
            raise src.error(path, str(exc)) from None
    for task in out:
        for i, other in enumerate(getattr(task, "fallback", ())):
            if other not in tasks:
                raise src.error(
                    ("tasks", task.name, "fallback", i),
                    f"unknown task {other!r}; defined tasks: {', '.join(tasks) or 'none'}",
                )
    return out


def _read_instances(src: _Source, instances: Any, task_names: set[str]) -> list[InstanceConfig]:
    if instances is None or instances == []:
        raise src.error((), "no instances: add at least one [[instances]] table")
    if not isinstance(instances, list):
        raise src.error(("instances",), f"expected a list of tables, got {_kind(instances)}")
    hints = _hints(LlmManager.add_provider)
    option_names = _settable(instance_option_names(), hints)
    out: list[InstanceConfig] = []
    for index, body in enumerate(instances):
        path: Path = ("instances", index)
        if not isinstance(body, dict):
            raise src.error(path, f"expected a table of instance settings, got {_kind(body)}")
        _check_keys(src, body, path, (*_INSTANCE_FIXED, *option_names))
        ptype = _provider(src, body, path)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise src.error((*path, "model"), f"expected a model name, got {_kind(model)}")
        api_key = body.get("api_key", "")
        if not isinstance(api_key, str):
            raise src.error((*path, "api_key"), f"expected a string, got {_kind(api_key)}")
        if not api_key and requires_key(ptype):
            raise src.error(
                (*path, "api_key"),
                f'{ptype.value} instances need a key, e.g. api_key = "${{{_key_variable(ptype)}}}"',
            )
        tasks = _instance_tasks(src, body.get("tasks", []), (*path, "tasks"), task_names)
        options = {
            k: _coerce(src, v, hints.get(k, Any), (*path, k))
            for k, v in body.items()
            if k in option_names
        }
        if "provider_params" in options:
            _check_provider_names(src, options["provider_params"], (*path, "provider_params"))
        out.append(InstanceConfig(ptype, model, api_key, tasks, options))
    return out


def _provider(src: _Source, body: dict[str, Any], path: Path) -> ProviderType:
    value = body.get("provider")
    if not isinstance(value, str):
        raise src.error(
            (*path, "provider"),
            f"expected a provider name ({', '.join(PROVIDER_NAMES)}), got {_kind(value)}",
        )
    try:
        return resolve_provider_type(value)
    except ConfigurationError as exc:
        raise src.error((*path, "provider"), str(exc)) from None


def _instance_tasks(src: _Source, tasks: Any, path: Path, task_names: set[str]) -> tuple[str, ...]:
    if not isinstance(tasks, list):
        raise src.error(path, f"expected a list of task names, got {_kind(tasks)}")
    defined = ", ".join(sorted(task_names)) or "none (define them under [tasks.NAME])"
    for i, name in enumerate(tasks):
        if not isinstance(name, str) or name not in task_names:
            raise src.error((*path, i), f"unknown task {name!r}; defined tasks: {defined}")
    return tuple(dict.fromkeys(tasks))


def _check_provider_names(src: _Source, value: Any, path: Path) -> None:
    for name in value or {}:
        try:
            resolve_provider_type(name)
        except ConfigurationError as exc:
            raise src.error((*path, name), str(exc)) from None


def _check_keys(src: _Source, body: Mapping[str, Any], path: Path, allowed: Sequence[str]) -> None:
    for key in body:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise src.error(
                (*path, str(key)), f"unknown key; {hint}valid keys: {', '.join(allowed)}"
            )


# -- values against type hints -----------------------------------------------------------------


def _hints(obj: Callable[..., Any] | type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # an annotation not resolvable at run time: accept any value
        return {}


def _settable(names: Iterable[str], hints: Mapping[str, Any]) -> tuple[str, ...]:
    """The names a file can set: those whose type a TOML or YAML value can have (not a
    function, a clock or a random generator)."""
    return tuple(name for name in names if _expressible(hints.get(name, Any)))


def _expressible(hint: Any) -> bool:
    if hint is Any:
        return True
    for arm in _arms(hint):
        origin = typing.get_origin(arm) or arm
        if origin in (bool, int, float, str, dict, Mapping, typing.Literal, *_SEQUENCES):
            return True
        if dataclasses.is_dataclass(origin):
            return True
    return False


def _arms(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, _UnionType):
        return typing.get_args(hint)
    return (hint,)


_UnionType: Any = type(int | str)
_SEQUENCES = (list, tuple, Sequence, Iterable)


def _coerce(src: _Source, value: Any, hint: Any, path: Path) -> Any:
    """``value`` if it fits ``hint``, a dataclass built from a table where the hint is one, or
    a ConfigurationError saying what was expected (never showing the value)."""
    if hint is Any:
        return value
    arms = _arms(hint)
    for arm in arms:
        origin = typing.get_origin(arm) or arm
        args = typing.get_args(arm)
        if origin is typing.Literal and value in args:
            return value
        if _scalar_fits(value, origin):
            return value
        if origin in (dict, Mapping) and isinstance(value, dict):
            inner = args[1] if len(args) == 2 else Any
            return {k: _coerce(src, v, inner, (*path, str(k))) for k, v in value.items()}
        if origin in _SEQUENCES and isinstance(value, list):
            inner = args[0] if args else Any
            items = [_coerce(src, v, inner, (*path, i)) for i, v in enumerate(value)]
            return tuple(items) if origin in (tuple, Sequence) else items
    for arm in arms:
        if dataclasses.is_dataclass(arm) and isinstance(arm, type) and isinstance(value, dict):
            return _dataclass(src, value, arm, path)
    expected = " or ".join(dict.fromkeys(_describe(arm) for arm in arms if arm is not type(None)))
    raise src.error(path, f"expected {expected}, got {_kind(value)}")


def _scalar_fits(value: Any, origin: Any) -> bool:
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return origin is str and isinstance(value, str)


def _dataclass(src: _Source, table: dict[str, Any], cls: type, path: Path) -> Any:
    hints = _hints(cls)
    allowed = _settable([f.name for f in dataclasses.fields(cls) if f.init], hints)
    _check_keys(src, table, path, allowed)
    kwargs = {k: _coerce(src, v, hints.get(k, Any), (*path, k)) for k, v in table.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ConfigurationError) as exc:
        raise src.error(path, str(exc)) from None


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if origin in names:
        return names[origin]
    if origin in (dict, Mapping):
        return "a table"
    if origin in _SEQUENCES:
        return "a list"
    if dataclasses.is_dataclass(origin):
        return f"a table of {getattr(origin, '__name__', 'settings')} settings"
    return f"a {getattr(origin, '__name__', str(origin))} (not expressible in a config file)"


def _kind(value: Any) -> str:
    """What a value is, in the file's words, never the value itself."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _key_variable(ptype: ProviderType) -> str:
    """The environment variable the provider's official SDK reads its key from (its spec's
    first), so the hint matches what users already have set: CO_API_KEY, AZURE_OPENAI_API_KEY..."""
    names = spec_for(ptype).key_env
    return names[0] if names else f"{ptype.value.upper()}_API_KEY"
