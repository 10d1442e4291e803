"""Deterministic reply text and token accounting shared by every dialect.

A token is a whitespace-separated word. A reply is a tag word derived from the prompt
(``t`` + 7 hex digits of a BLAKE2b hash of the last user message, e.g. ``t3f9a2c1``) followed
by words from :data:`VOCABULARY`, joined with single spaces. No vocabulary word is a substring
of another word or of any tag, so any one of them works as an unambiguous stop sequence.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flyllm.emulator.tools import PlannedCall

__all__ = [
    "REFUSAL_TEXT",
    "VOCABULARY",
    "Reply",
    "compose_reply",
    "count_words",
    "generate_text",
    "prompt_tag",
    "text_reply",
]

MIN_REPLY_TOKENS = 12
MAX_REPLY_TOKENS = 40
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."

_WORDS = """
    river stone quiet garden window morning silver planet simple market yellow purple
    kitchen forest little pocket village winter summer spring autumn mountain ocean valley
    bright gentle happy clever brave lively modest polite proud rapid steady sturdy swift
    tidy warm wild young paper pencil marble candle ladder mirror button carpet coffee
    copper cotton desk engine fabric feather guitar hammer helmet island jacket jungle
    kettle lemon magnet meadow needle orange pepper pillow rabbit ribbon rocket saddle
    shadow signal socket spider spoon sugar tunnel turtle violin wagon walnut wheel whistle
    zipper journey harvest lantern compass blanket bridge castle circle crystal dragon drum
    falcon glove harbor honey iron jewel kingdom lily melody moon orchard puzzle quilt rain
    salmon school story sunny thunder tiger tomato travel umbrella velvet wizard wool yogurt
    zebra anchor basket cherry dolphin elbow finger giant hollow insect juggle koala monkey
    noodle oyster parrot quarry rhythm sparrow mellow shiny cosmic frosty dusty misty rusty
    sandy windy stormy chilly breezy cozy curly fuzzy jolly lucky merry noble plain rough
    smooth solid spicy sweet vivid wise brisk calm crisp dense fresh grand mild neat pale
    plump round sharp short slim soft stout tall thick thin tiny vast walk jump sing read
    write build paint swim climb dance dream float glow grow knit laugh listen march mix
    open plant pour print roll run sail shine skip sleep smile speak spin stand swing throw
    visit wander wash whisper wonder work
"""
#: The fixed vocabulary replies draw from (lowercase, no word inside another one).
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer, ready for any dialect.

    ``chunks`` are the streaming increments (one token each, with its leading space, the last
    one possibly cut by a stop sequence); ``"".join(chunks) == text``. ``tokens`` is the number
    of whitespace words in ``text``. ``finish`` is provider-neutral: ``"end"``, ``"length"``,
    ``"stop_sequence"``, ``"refusal"`` or ``"tool_calls"``.
    """

    text: str
    chunks: tuple[str, ...]
    tokens: int
    finish: str
    stop_sequence: str | None = None
    calls: tuple[PlannedCall, ...] = ()
    """The tool calls of the answer (``finish`` is then ``"tool_calls"``); see
    :mod:`flyllm.emulator.tools`."""


def count_words(text: str) -> int:
    """Number of tokens in ``text`` under the emulator's one-word-one-token rule."""
    return len(text.split())


def _digest(prompt: str) -> str:
    return hashlib.blake2b(prompt.encode("utf-8"), digest_size=16).hexdigest()


def prompt_tag(prompt: str) -> str:
    """The first word of every reply to ``prompt``: ``t`` and 7 hex digits of its hash."""
    return "t" + _digest(prompt)[:7]


# Caches are keyed by the prompt's digest, never the prompt: prompts can be megabytes long.
@lru_cache(maxsize=4096)
def _tokens(digest: str, seed: int, n_tokens: int | None) -> tuple[str, ...]:
    rng = random.Random(f"{seed}:{digest}")
    n = rng.randint(MIN_REPLY_TOKENS, MAX_REPLY_TOKENS) if n_tokens is None else n_tokens
    if n <= 0:
        return ()
    return ("t" + digest[:7], *rng.choices(VOCABULARY, k=n - 1))


def generate_text(prompt: str, seed: int = 0, n_tokens: int | None = None) -> list[str]:
    """The tokens the emulator answers ``prompt`` with, before max-tokens and stop sequences.

    ``prompt`` is the text of the last user message; ``n_tokens`` fixes the length (the
    emulator's ``reply_tokens``), otherwise it is drawn from 12..40 by the same seeded
    generator. The same arguments always give the same list.
    """
    return list(_tokens(_digest(prompt), seed, n_tokens))


def _earliest_stop(text: str, stops: tuple[str, ...]) -> tuple[int, str | None]:
    best, found = len(text) + 1, None
    for stop in stops:
        if stop:
            at = text.find(stop)
            if 0 <= at < best:
                best, found = at, stop
    return best, found


def compose_reply(
    prompt: str,
    seed: int,
    n_tokens: int | None,
    max_tokens: int | None,
    stops: tuple[str, ...] = (),
    refusal: bool = False,
) -> Reply:
    """The reply to ``prompt`` after the max-tokens limit and the first stop sequence.

    The limit applies first (the model never generates past it), then the text is cut right
    before the earliest occurrence of any stop sequence, which is not returned.
    """
    return _compose(_digest(prompt), seed, n_tokens, max_tokens, stops, refusal)


@lru_cache(maxsize=4096)
def _compose(
    digest: str,
    seed: int,
    n_tokens: int | None,
    max_tokens: int | None,
    stops: tuple[str, ...],
    refusal: bool,
) -> Reply:
    words: tuple[str, ...] = (
        tuple(REFUSAL_TEXT.split()) if refusal else _tokens(digest, seed, n_tokens)
    )
    return _cut(words, max_tokens, stops, refusal)


def text_reply(text: str, max_tokens: int | None, stops: tuple[str, ...] = ()) -> Reply:
    """A reply of the given ``text`` (one token per word), after the max-tokens limit and
    the first stop sequence, like every other reply."""
    return _cut(tuple(text.split()), max_tokens, stops, False)


def _cut(
    words: tuple[str, ...], max_tokens: int | None, stops: tuple[str, ...], refusal: bool
) -> Reply:
    truncated = max_tokens is not None and max_tokens < len(words)
    if max_tokens is not None:
        words = words[: max(max_tokens, 0)]
    pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
    text = "".join(pieces)
    cut, matched = _earliest_stop(text, stops)
    if matched is not None:
        chunks: list[str] = []
        pos = 0
        for piece in pieces:
            if pos >= cut:
                break
            chunks.append(piece[: cut - pos])
            pos += len(piece)
        text = text[:cut]
        return Reply(text, tuple(chunks), count_words(text), "stop_sequence", matched)
    finish = "refusal" if refusal else "length" if truncated else "end"
    return Reply(text, tuple(pieces), len(words), finish)
