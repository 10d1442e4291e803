"""The deterministic reply text: tags, vocabulary, limits and stop sequences."""

from __future__ import annotations

import re

from flyllm.emulator import generate_text
from flyllm.emulator.text import VOCABULARY, compose_reply, count_words, prompt_tag


def test_same_prompt_and_seed_give_the_same_reply() -> None:
    assert generate_text("hello", seed=3) == generate_text("hello", seed=3)
    assert generate_text("hello", seed=3) != generate_text("hello", seed=4)


def test_reply_starts_with_a_tag_of_the_prompt_only() -> None:
    tokens = generate_text("What is the capital of France?", seed=7)
    assert re.fullmatch(r"t[0-9a-f]{7}", tokens[0])
    assert tokens[0] == prompt_tag("What is the capital of France?")
    assert generate_text("What is the capital of France?", seed=8)[0] == tokens[0]
    assert generate_text("Another prompt", seed=7)[0] != tokens[0]


def test_default_length_is_between_12_and_40_and_words_come_from_the_vocabulary() -> None:
    lengths = set()
    for i in range(200):
        tokens = generate_text(f"prompt number {i}")
        lengths.add(len(tokens))
        assert set(tokens[1:]) <= set(VOCABULARY)
    assert min(lengths) >= 12 and max(lengths) <= 40 and len(lengths) > 10


def test_fixed_length() -> None:
    assert len(generate_text("x", n_tokens=5)) == 5
    assert generate_text("x", n_tokens=1) == [prompt_tag("x")]
    assert generate_text("x", n_tokens=0) == []


def test_vocabulary_words_are_unambiguous_stop_sequences() -> None:
    assert len(set(VOCABULARY)) == len(VOCABULARY) > 100
    for word in VOCABULARY:
        assert word.islower() and word.isalpha()
        assert not re.fullmatch(r"t?[0-9a-f]+", word), word
        assert not [other for other in VOCABULARY if other != word and word in other], word


def test_max_tokens_truncates_with_length_finish() -> None:
    full = generate_text("p", seed=1, n_tokens=20)
    reply = compose_reply("p", 1, 20, 5, ())
    assert reply.text == " ".join(full[:5])
    assert reply.tokens == 5 and reply.finish == "length"
    assert compose_reply("p", 1, 20, 20, ()).finish == "end"


def test_stop_sequence_cuts_before_its_first_occurrence() -> None:
    full = generate_text("p", seed=1, n_tokens=20)
    stop = full[6]
    reply = compose_reply("p", 1, 20, None, ("never-there", stop))
    text = " ".join(full)
    assert reply.text == text[: text.index(stop)]
    assert reply.finish == "stop_sequence" and reply.stop_sequence == stop
    assert reply.tokens == count_words(reply.text) == full.index(stop)
    assert "".join(reply.chunks) == reply.text


def test_stop_sequence_beyond_the_limit_does_not_count() -> None:
    full = generate_text("p", seed=1, n_tokens=20)
    reply = compose_reply("p", 1, 20, 3, (full[10],))
    assert reply.finish == "length" and reply.stop_sequence is None and reply.tokens == 3


def test_stop_inside_a_token_keeps_a_partial_chunk() -> None:
    full = generate_text("p", seed=1, n_tokens=20)
    reply = compose_reply("p", 1, 20, None, (full[4][1:],))
    assert reply.chunks[-1] == " " + full[4][0]
    assert "".join(reply.chunks) == reply.text
    assert reply.tokens == 5


def test_chunks_concatenate_to_the_text_one_token_each() -> None:
    reply = compose_reply("hello", 0, None, None, ())
    assert "".join(reply.chunks) == reply.text
    assert [c.strip() for c in reply.chunks] == reply.text.split()
    assert all(c.startswith(" ") for c in reply.chunks[1:])


def test_refusal_reply() -> None:
    reply = compose_reply("hello", 0, None, None, (), refusal=True)
    assert reply.finish == "refusal" and reply.tokens == count_words(reply.text) > 3
