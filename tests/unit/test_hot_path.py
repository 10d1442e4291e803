"""The cost of a plain request, counted rather than timed, so that it cannot creep up unseen.

A plain, non-streamed text request is what most callers send most often; feature work (tools,
structured output, images) once made it cost 15% more client CPU without any test noticing.
This guard runs plain requests through the whole client path (plan, attempt loop, the OpenAI
build and parse, usage recording, events) over a transport that answers at once from memory,
and counts Python function calls per request with cProfile: a deterministic figure, the same on
a loaded machine as on an idle one. Over the budget, the message names the figure and the
functions called most, per request.

When a change adds calls on purpose, raise the budget in the same commit and say why; when it
removes some, lower it, so the next regression shows.
"""

from __future__ import annotations

import cProfile
import dataclasses
import inspect
import pstats
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from flyllm import GenerationRequest, LlmManager, LlmResponse, Message, Usage
from flyllm._transport import Transport
from flyllm._wire import HttpRequest, HttpResponse, Timeouts
from flyllm.errors import InvalidRequestError
from flyllm.providers._common import MODEL_LIMIT, _clean_model, clip, dumps, served_model
from flyllm.types import _quick_init
from tests.fixtures import fixture_bytes

CALL_BUDGET = 170
"""Python function calls per plain request (manager, engine, attempt loop, OpenAI build and
parse, JSON, usage recording): 183 at e6cc6af, 166 once the hot path was trimmed; the budget
leaves a small margin."""

PLAN_BUILD_PARSE_BUDGET = 99
"""The calls of the request's plan, the OpenAI body builder and the answer parser alone: 110
at e6cc6af, 96 after."""

# As the emulator and OpenAI answer: the rate-limit headers are read on every answer.
HEADERS = {
    "content-type": "application/json",
    "x-request-id": "req_1",
    "x-ratelimit-remaining-requests": "29999",
    "x-ratelimit-remaining-tokens": "149999969",
    "x-ratelimit-reset-requests": "2ms",
    "x-ratelimit-reset-tokens": "0s",
}
ANSWER = HttpResponse(200, HEADERS, fixture_bytes("openai", "chat_completion.json"))
WARM, MEASURED = 10, 50


class CannedTransport:
    """Answers every request at once with the same 200 answer: no sockets, no waiting."""

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        return ANSWER


def plain_manager() -> LlmManager:
    """Four OpenAI instances under the random strategy, as the benchmark's throughput
    scenario sets them up."""
    manager = LlmManager(strategy="random")
    for i in range(4):
        manager.add_provider(
            "openai",
            "-".join(["bench", "key", str(i)]),
            "gpt-4o-mini",
            base_url=f"http://127.0.0.1:{9000 + i}/v1",
            parameters={"max_tokens": 64},
        )
    manager._engine.transport = cast(Transport, CannedTransport())
    return manager


def calls_by_function(profile: cProfile.Profile) -> Counter[str]:
    """Calls per function (``module:line(name)``) in a profile."""
    out: Counter[str] = Counter()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (path, line, name), (_, ncalls, *_rest) in stats.items():
        short = path.rsplit("/flyllm/", 1)[-1] if "/flyllm/" in path else path.rsplit("/", 1)[-1]
        out[f"{short}:{line}({name})"] += ncalls
    return out


def over_budget(what: str, calls: Counter[str], budget: int) -> str:
    per_request = sum(calls.values()) / MEASURED
    top = "; ".join(f"{name} {n / MEASURED:g}" for name, n in calls.most_common(12))
    return (
        f"{what} costs {per_request:.1f} Python function calls, over its budget of {budget} "
        f"(tests/unit/test_hot_path.py): the most called, per request: {top}"
    )


async def test_a_plain_request_stays_within_its_call_budget() -> None:
    manager = plain_manager()
    requests = [GenerationRequest(prompt=f"prompt {i}") for i in range(WARM + MEASURED)]
    await manager.batch_generate(requests[:WARM], max_concurrency=1)  # caches filled
    profile = cProfile.Profile()
    profile.enable()
    responses = await manager.batch_generate(requests[WARM:], max_concurrency=1)
    profile.disable()
    assert all(r.success and r.content for r in responses)
    assert sum(r.usage.total_tokens for r in responses) == 29 * MEASURED
    calls = calls_by_function(profile)
    total = sum(calls.values())
    assert total <= CALL_BUDGET * MEASURED, over_budget("a plain request", calls, CALL_BUDGET)


def test_plan_build_and_parse_stay_within_their_call_budget() -> None:
    manager = plain_manager()
    instance = manager._all[0]
    requests = [GenerationRequest(prompt=f"prompt {i}") for i in range(MEASURED)]
    params = {"max_tokens": 64}
    profile = cProfile.Profile()
    profile.enable()
    for request in requests:
        plan = manager._plan(request)
        instance.provider.build(instance.endpoint, plan.messages, params)
        instance.provider.parse(ANSWER, instance.endpoint)
    profile.disable()
    calls = calls_by_function(profile)
    total = sum(calls.values())
    what = "planning, building and parsing a plain request"
    assert total <= PLAN_BUILD_PARSE_BUDGET * MEASURED, over_budget(
        what, calls, PLAN_BUILD_PARSE_BUDGET
    )


def sample_class(quick: bool) -> type[Any]:
    """The same frozen dataclass, with dataclasses' own ``__init__`` or _quick_init's."""

    @dataclass(slots=True, frozen=True)
    class Sample:
        name: str
        count: int = 0
        items: list[int] = field(default_factory=list)
        label: str | None = field(default=None, kw_only=True)

    return _quick_init(Sample) if quick else Sample


def test_quick_init_builds_the_same_values_as_the_dataclass_init() -> None:
    plain, quick = sample_class(False), sample_class(True)
    assert str(inspect.signature(quick)) == str(inspect.signature(plain))
    assert quick.__init__.__annotations__ == plain.__init__.__annotations__
    for args, kwargs in [(("a",), {}), (("a", 2, [1]), {"label": "x"}), ((), {"name": "b"})]:
        a, b = plain(*args, **kwargs), quick(*args, **kwargs)
        assert repr(a).replace("plain", "") == repr(b) and hash(a.name) == hash(b.name)
        assert (a.name, a.count, a.items, a.label) == (b.name, b.count, b.items, b.label)
    assert quick("a").items is not quick("a").items  # a fresh default each time
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick("a").count = 1
    with pytest.raises(TypeError):
        quick("a", 1, [], "label")  # label is keyword-only
    with pytest.raises(TypeError):
        quick()  # name is required
    assert LlmResponse("x", True).usage == Usage() and Message("user").content == ""


def test_quick_init_refuses_what_it_cannot_build() -> None:
    @dataclass(slots=True, frozen=True)
    class Derived:
        name: str
        upper: str = field(init=False, default="")

    with pytest.raises(TypeError, match="init=False"):
        _quick_init(Derived)


def test_served_model_names_are_cleaned_even_when_remembered() -> None:
    secret = "-".join(["sk", "proj", "abcdef123456"])  # built at run time
    for name in ["gpt\x1b[2J-4o", f"model {secret}", "gpt-4o-mini"]:
        for _ in range(2):  # the second time from the memo
            assert served_model(name) == clip(name, MODEL_LIMIT)
    assert served_model("gpt\x1b[2J-4o") == "gpt-4o"
    assert secret not in (served_model(f"model {secret}") or "")
    for i in range(600):  # a server naming a new model every time: the memo stays bounded
        served_model(f"model-{i}")
    assert _clean_model.cache_info().currsize <= 256


def test_the_shared_json_encoder_writes_and_refuses_as_before() -> None:
    assert dumps({"a": "é", "b": [1, 2.5]}) == '{"a":"é","b":[1,2.5]}'.encode()
    for bad in ({"a": float("nan")}, {"a": {1, 2}}, {"a": b"x"}):
        with pytest.raises(InvalidRequestError, match="cannot be sent as JSON"):
            dumps(bad)
