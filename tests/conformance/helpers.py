"""Constants and expected values shared by the conformance tests."""

from __future__ import annotations

from flyllm.emulator import generate_text

#: The key every emulator in this suite accepts; anything else is a wrong key.
KEY = "conformance-key-0001"
#: A fixed reply length makes the expected texts easy to state.
REPLY_TOKENS = 16
PROMPT = "Tell me a short story about a river and a stone."
SYSTEM = "You are a terse assistant."


def words(prompt: str = PROMPT) -> list[str]:
    """The emulator's reply tokens for ``prompt`` at the suite's fixed length."""
    return generate_text(prompt, n_tokens=REPLY_TOKENS)


def expected_text(prompt: str = PROMPT, max_tokens: int | None = None) -> str:
    """The full (or max-tokens-limited) reply text: the tokens joined with single spaces."""
    return " ".join(words(prompt)[:max_tokens])


def stop_case(prompt: str = PROMPT, index: int = 6) -> tuple[str, str]:
    """A stop sequence (the reply's ``index``-th word) and the text the reply is cut to.

    Providers return the text up to, not including, the first occurrence of the stop sequence.
    """
    stop = words(prompt)[index]
    full = expected_text(prompt)
    return stop, full[: full.index(stop)]
