"""The helpers every dialect shares (emulator/wire.py), on plain values."""

from __future__ import annotations

from flyllm.emulator.wire import Conversation, Route, bearer_token, chat_route, text_parts


def test_bearer_token_reads_the_scheme_in_any_case_and_nothing_else() -> None:
    token = "-".join(("tok", "wire", "test"))  # built at run time
    assert bearer_token({"Authorization": f"Bearer {token}"}) == token
    assert bearer_token({"Authorization": f"bEaReR   {token}  "}) == token
    assert bearer_token({"Authorization": "Bearer   "}) is None
    assert bearer_token({"Authorization": f"Basic {token}"}) is None
    assert bearer_token({}) is None


def test_text_parts_joins_text_parts_and_ignores_the_rest() -> None:
    assert text_parts("plain") == "plain"
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "x"}},
        "not a part",
        {"type": "text", "text": "b"},
        {"type": "text"},
    ]
    assert text_parts(parts) == "a\nb\n"
    assert text_parts(None) == ""
    assert text_parts(42) == ""


def test_chat_route_matches_method_and_path() -> None:
    assert chat_route("POST", "/v1/chat", "/v1/chat", "/v1/models") == Route("/v1/chat")
    listing = chat_route("GET", "/v1/models", "/v1/chat", "/v1/models")
    assert listing == Route("/v1/models", listing=True)
    assert chat_route("GET", "/v1/chat", "/v1/chat", "/v1/models") is None
    assert chat_route("POST", "/v1/models", "/v1/chat", "/v1/models") is None
    assert chat_route("POST", "/v2/chat", "/v1/chat", "/v1/models") is None


def test_conversation_from_texts_counts_turns_and_finds_the_trigger() -> None:
    conv = Conversation.from_texts(
        "m", ["be brief", "say [[context_length]] now"], "", max_tokens=5, stream=True
    )
    assert conv.prompt == "say [[context_length]] now"
    assert conv.prompt_tokens == (2 + 3) + (3 + 3)
    assert conv.trigger == "context_length"
    assert (conv.max_tokens, conv.stream, conv.sse, conv.include_usage) == (5, True, True, False)
    assert Conversation.from_texts("m", ["a", "b"], "a").prompt == "a"
    assert Conversation.from_texts("m", [], "").prompt == ""
