"""LlmManagerBuilder: the original FlyLLM's fluent builder, in Python form.

    manager = (
        LlmManagerBuilder()
        .define_task(TaskDefinition("summary", {"max_tokens": 500}))
        .strategy("lowest_latency")
        .max_attempts(4)
        .add_instance(ProviderType.OPENAI, model="gpt-4o-mini", api_key=openai_key)
        .supports("summary")
        .add_instance("anthropic", model="claude-sonnet-4-5", api_key=anthropic_key)
        .supports_many(["summary"])
        .weight(2)
        .build()
    )

``model`` and ``api_key`` are keyword-only: the original's builder and ``add_provider`` take them
in opposite orders, and a swap would put a key where model names are logged. Instance setters
(``supports``, ``enabled``, ``base_url``, ``name``, ``weight``...) apply to the instance added
last. Manager settings mirror ``LlmManager()``'s keywords; the accepted names are read from its
signature at call time, so options added to the manager later pass through ``manager_option``,
and ``add_provider`` keywords through ``instance_option``. Every misuse is a ConfigurationError
that says what to do, raised at the call that made it or, for what only the whole picture shows
(a task nobody serves), at ``build()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flyllm.errors import ConfigurationError
from flyllm.manager import LlmManager
from flyllm.providers import resolve_provider_type
from flyllm.routing.resilience import RetryPolicy
from flyllm.routing.strategies import Strategy
from flyllm.types import ProviderType, TaskDefinition

__all__ = ["LlmManagerBuilder", "instance_option_names", "manager_option_names"]

INSTANCE_FIXED = ("provider", "api_key", "model", "tasks")
"""add_provider arguments the builder sets through add_instance() and supports()."""

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _keywords(func: Callable[..., Any], exclude: Iterable[str]) -> tuple[str, ...]:
    skip = {"self", *exclude}
    return tuple(
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind in _KEYWORD_KINDS and p.name not in skip
    )


def manager_option_names() -> tuple[str, ...]:
    """The keywords ``LlmManager()`` accepts now (strategy, max_attempts, read_timeout, ...)."""
    return _keywords(LlmManager.__init__, ())


def instance_option_names() -> tuple[str, ...]:
    """The ``add_provider`` keywords settable per instance beyond provider, api_key, model and
    tasks (enabled, base_url, name, weight, parameters, headers, ...)."""
    return _keywords(LlmManager.add_provider, INSTANCE_FIXED)


@dataclass(slots=True)
class _Instance:
    """One add_instance() call and the settings chained after it."""

    provider: ProviderType
    model: str
    api_key: str = field(repr=False)
    tasks: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def label(self, index: int) -> str:
        name = self.options.get("name")
        return f"instance #{index} ({name or f'{self.provider.value} {self.model}'})"


class LlmManagerBuilder:
    """Builds an LlmManager by chained calls; ``build()`` returns it (once per builder).

    Manager settings: ``strategy``, ``max_attempts``, ``connect_timeout``, ``read_timeout``,
    ``deadline``, ``max_concurrency``, ``retry_policy`` and ``manager_option(name, value)`` for
    any other ``LlmManager()`` keyword (``breaker``, ...). Tasks: ``define_task``.
    Instances: ``add_instance(provider, *, model, api_key)`` then, for that instance,
    ``supports``, ``supports_many``, ``enabled``, ``base_url``, ``name``, ``weight``,
    ``parameters``, ``provider_params``, ``headers``, ``api_version``, ``options`` and
    ``instance_option(name, value)`` for any other ``add_provider`` keyword (``rpm``,
    ``tpm``, ``max_concurrent``, ...).
    """

    def __init__(self) -> None:
        self._manager_options: dict[str, Any] = {}
        self._tasks: dict[str, TaskDefinition] = {}
        self._instances: list[_Instance] = []
        self._built = False

    # -- manager settings --------------------------------------------------------------------

    def manager_option(self, name: str, value: Any) -> LlmManagerBuilder:
        """Set any keyword of ``LlmManager()``; an unknown name lists the valid ones."""
        valid = manager_option_names()
        if name not in valid:
            raise ConfigurationError(
                f"unknown manager option {name!r}; LlmManager accepts: {', '.join(valid)}"
            )
        self._manager_options[name] = value
        return self

    def strategy(self, strategy: str | Strategy) -> LlmManagerBuilder:
        """The selection strategy: a name ("lowest_latency", ...) or a Strategy object."""
        return self.manager_option("strategy", strategy)

    def max_attempts(self, attempts: int) -> LlmManagerBuilder:
        """The bound on attempts per request (each request may override it)."""
        return self.manager_option("max_attempts", attempts)

    def connect_timeout(self, seconds: float) -> LlmManagerBuilder:
        """The time bound for opening a connection, in seconds."""
        return self.manager_option("connect_timeout", seconds)

    def read_timeout(self, seconds: float) -> LlmManagerBuilder:
        """The time bound between reads of an answer (per chunk when streaming), in seconds."""
        return self.manager_option("read_timeout", seconds)

    def deadline(self, seconds: float | None) -> LlmManagerBuilder:
        """The time bound of a whole request across attempts and waits (None: no bound)."""
        return self.manager_option("deadline", seconds)

    def max_concurrency(self, limit: int) -> LlmManagerBuilder:
        """batch_generate's default bound on requests in flight."""
        return self.manager_option("max_concurrency", limit)

    def retry_policy(self, policy: RetryPolicy) -> LlmManagerBuilder:
        """The backoff between rounds of retries over the same instances."""
        return self.manager_option("retry_policy", policy)

    # -- tasks -------------------------------------------------------------------------------

    def define_task(self, task: TaskDefinition) -> LlmManagerBuilder:
        """Register a task; instances name it in ``supports()``. Defining the same name again
        with other parameters is an error."""
        if not isinstance(task, TaskDefinition):
            raise ConfigurationError(f"define_task() needs a TaskDefinition, got {task!r}")
        if not isinstance(task.name, str) or not task.name:
            raise ConfigurationError("a task needs a non-empty name")
        known = self._tasks.get(task.name)
        if known is not None and known != task:
            raise ConfigurationError(f"task {task.name!r} is already defined with other settings")
        self._tasks[task.name] = task
        return self

    # -- instances ---------------------------------------------------------------------------

    def add_instance(
        self, provider: ProviderType | str, *, model: str, api_key: str
    ) -> LlmManagerBuilder:
        """Start a new instance; the instance setters that follow apply to it. ``api_key`` may
        be "" only for providers that need none (a local openai_compatible server)."""
        ptype = resolve_provider_type(provider)
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"add_instance({ptype.value!r}) needs a model name")
        if not isinstance(api_key, str):
            raise ConfigurationError(
                f"add_instance({ptype.value!r}, model={model!r}): api_key must be a string"
            )
        self._instances.append(_Instance(ptype, model, api_key))
        return self

    def _current(self, setter: str) -> _Instance:
        if not self._instances:
            raise ConfigurationError(
                f"{setter}() applies to the instance added last, but no instance was added: "
                "call add_instance(provider, model=..., api_key=...) first"
            )
        return self._instances[-1]

    def instance_option(self, name: str, value: Any) -> LlmManagerBuilder:
        """Set any ``add_provider`` keyword on the instance added last; an unknown name lists
        the valid ones."""
        return self._set("instance_option", name, value)

    def _set(self, setter: str, name: str, value: Any) -> LlmManagerBuilder:
        instance = self._current(setter)
        valid = instance_option_names()
        if name not in valid:
            hint = " (use add_instance() and supports())" if name in INSTANCE_FIXED else ""
            raise ConfigurationError(
                f"unknown instance option {name!r}{hint}; add_provider accepts: {', '.join(valid)}"
            )
        instance.options[name] = value
        return self

    def supports(self, task: str | TaskDefinition) -> LlmManagerBuilder:
        """The instance added last serves ``task`` (a defined task's name, or a TaskDefinition,
        which is defined here)."""
        instance = self._current("supports")
        if isinstance(task, TaskDefinition):
            self.define_task(task)
            task = task.name
        if not isinstance(task, str) or not task:
            raise ConfigurationError(f"supports() needs a task name, got {task!r}")
        if task not in instance.tasks:
            instance.tasks.append(task)
        return self

    def supports_many(self, tasks: Iterable[str | TaskDefinition]) -> LlmManagerBuilder:
        """``supports()`` for each of ``tasks``."""
        self._current("supports_many")
        if isinstance(tasks, str | TaskDefinition):
            raise ConfigurationError("supports_many() needs a list of tasks; use supports()")
        for task in tasks:
            self.supports(task)
        return self

    def enabled(self, enabled: bool) -> LlmManagerBuilder:
        """Whether the instance added last takes requests from the start."""
        self._current("enabled")
        if not isinstance(enabled, bool):
            raise ConfigurationError(f"enabled() needs True or False, got {enabled!r}")
        return self._set("enabled", "enabled", enabled)

    def base_url(self, url: str) -> LlmManagerBuilder:
        """The base URL of the instance added last, as the provider's official SDK takes it."""
        return self._set("base_url", "base_url", url)

    def name(self, name: str) -> LlmManagerBuilder:
        """The name logs and usage show for the instance added last."""
        return self._set("name", "name", name)

    def weight(self, weight: float) -> LlmManagerBuilder:
        """The weight of the instance added last, for the weighted_random strategy."""
        return self._set("weight", "weight", weight)

    def parameters(self, parameters: Mapping[str, Any]) -> LlmManagerBuilder:
        """Default parameters of the instance added last (below task and request ones)."""
        return self._set("parameters", "parameters", parameters)

    def provider_params(
        self, provider_params: Mapping[str, Mapping[str, Any]]
    ) -> LlmManagerBuilder:
        """Provider-only parameters of the instance added last, keyed by provider name."""
        return self._set("provider_params", "provider_params", provider_params)

    def headers(self, headers: Mapping[str, str]) -> LlmManagerBuilder:
        """Headers sent with every request of the instance added last."""
        return self._set("headers", "headers", headers)

    def api_version(self, version: str) -> LlmManagerBuilder:
        """The provider API version of the instance added last."""
        return self._set("api_version", "api_version", version)

    def options(self, options: Mapping[str, Any]) -> LlmManagerBuilder:
        """Provider-specific addressing of the instance added last."""
        return self._set("options", "options", options)

    # -- build -------------------------------------------------------------------------------

    def build(self) -> LlmManager:
        """The LlmManager with every task and instance added, in order (instance ids 0, 1...)."""
        if self._built:
            raise ConfigurationError(
                "this builder already built its manager; start a new LlmManagerBuilder()"
            )
        self._check()
        try:
            manager = LlmManager(**self._manager_options)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"manager options: {exc}") from None
        for task in self._tasks.values():
            manager.define_task(task)
        for index, instance in enumerate(self._instances):
            try:
                manager.add_provider(
                    instance.provider,
                    instance.api_key,
                    instance.model,
                    instance.tasks,
                    **instance.options,
                )
            except (ConfigurationError, TypeError, ValueError) as exc:
                raise ConfigurationError(f"{instance.label(index)}: {exc}") from None
        self._built = True
        return manager

    def _check(self) -> None:
        """The whole-picture checks: instances exist, tasks named are defined and served."""
        if not self._instances:
            raise ConfigurationError(
                "build() found no instance: call add_instance(provider, model=..., api_key=...)"
            )
        defined = ", ".join(self._tasks) or "none"
        served: set[str] = set()
        for index, instance in enumerate(self._instances):
            for task in instance.tasks:
                if task not in self._tasks:
                    raise ConfigurationError(
                        f"{instance.label(index)} supports task {task!r}, which is not defined "
                        f"(defined tasks: {defined}); call define_task(TaskDefinition({task!r}))"
                    )
            served.update(instance.tasks)
        for task in self._tasks:
            if task not in served:
                raise ConfigurationError(
                    f"task {task!r} is defined but no instance supports it; "
                    f"add .supports({task!r}) after the instance that should serve it"
                )
