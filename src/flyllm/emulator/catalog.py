"""What the emulated models endpoints list, and the paging the paginating ones share.

An emulator created with ``models=`` lists exactly those (sorted, all chat models with the
same plausible limits); otherwise each provider lists a small default catalogue that includes
a model that cannot chat (an embedding model...), so that clients' filters are exercised.
Paginating providers (Anthropic, Gemini, Cohere) serve at most :data:`PAGE_SIZE` models per
page whatever page size is asked: a real server may return fewer than asked, and a short page
makes every client walk the pages. Page tokens are opaque: ``base64url("emu:<offset>")``.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULTS",
    "PAGE_SIZE",
    "CatalogModel",
    "catalog",
    "page_size",
    "page_token",
    "read_page_token",
]

PAGE_SIZE = 2
"""The most models one page of a paginating models endpoint holds."""


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One listed model: its id, display name, release time (epoch seconds), context window
    and output limit in tokens, and whether it can chat (False: embedding, rerank...)."""

    id: str
    display_name: str
    created: int
    context_window: int = 128_000
    max_output: int = 8_192
    chat: bool = True


def _m(
    model_id: str,
    display: str,
    created: int,
    window: int = 128_000,
    output: int = 8_192,
    chat: bool = True,
) -> CatalogModel:
    return CatalogModel(model_id, display, created, window, output, chat)


_OPENAI = (
    _m("gpt-4.1", "GPT-4.1", 1_744_316_542, 1_047_576, 32_768),
    _m("gpt-4o", "GPT-4o", 1_715_367_049, 128_000, 16_384),
    _m("gpt-4o-mini", "GPT-4o mini", 1_721_172_741, 128_000, 16_384),
    _m("o3-mini", "o3-mini", 1_737_146_383, 200_000, 100_000),
    _m("text-embedding-3-small", "Text Embedding 3 Small", 1_705_948_997, 8_191, 0, False),
)
DEFAULTS: dict[str, tuple[CatalogModel, ...]] = {
    "openai": _OPENAI,
    "azure": _OPENAI,
    "anthropic": (  # most recent first, as the API lists them
        _m("claude-opus-4-6", "Claude Opus 4.6", 1_770_163_200, 200_000, 128_000),
        _m("claude-haiku-4-5-20251001", "Claude Haiku 4.5", 1_760_486_400, 200_000, 64_000),
        _m("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", 1_759_104_000, 200_000, 64_000),
        _m("claude-opus-4-1-20250805", "Claude Opus 4.1", 1_754_352_000, 200_000, 32_000),
        _m("claude-3-5-haiku-20241022", "Claude Haiku 3.5", 1_729_555_200, 200_000, 8_192),
    ),
    "google": (
        _m("gemini-2.5-pro", "Gemini 2.5 Pro", 1_750_118_400, 1_048_576, 65_536),
        _m("gemini-2.5-flash", "Gemini 2.5 Flash", 1_750_118_400, 1_048_576, 65_536),
        _m("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_753_142_400, 1_048_576, 65_536),
        _m("gemini-2.0-flash", "Gemini 2.0 Flash", 1_738_713_600, 1_048_576, 8_192),
        _m("text-embedding-004", "Text Embedding 004", 1_712_102_400, 2_048, 1, False),
    ),
    "mistral": (
        _m("mistral-large-latest", "mistral-large-2411", 1_731_542_400, 131_072),
        _m("mistral-small-latest", "mistral-small-2506", 1_750_291_200, 131_072),
        _m("codestral-latest", "codestral-2508", 1_754_006_400, 256_000),
        _m("mistral-embed", "mistral-embed", 1_702_339_200, 8_192, 0, False),
    ),
    "ollama": (
        _m("llama3.2:latest", "llama", 1_727_308_800, 131_072, 2_048),
        _m("qwen2.5:7b", "qwen2", 1_726_531_200, 32_768, 2_048),
        _m("nomic-embed-text:latest", "nomic-bert", 1_708_300_800, 8_192, 0, False),
    ),
    "cohere": (
        _m("command-a-03-2025", "Command A", 1_741_737_600, 256_000, 8_000),
        _m("command-r7b-12-2024", "Command R7B", 1_734_048_000, 128_000, 4_000),
        _m("command-r-plus-08-2024", "Command R+", 1_724_889_600, 128_000, 4_000),
        _m("embed-v4.0", "Embed v4", 1_744_848_000, 128_000, 0, False),
        _m("rerank-v3.5", "Rerank 3.5", 1_733_097_600, 4_096, 0, False),
    ),
    "groq": (
        _m("llama-3.3-70b-versatile", "Llama 3.3 70B", 1_733_447_754, 131_072, 32_768),
        _m("llama-3.1-8b-instant", "Llama 3.1 8B", 1_693_721_698, 131_072, 131_072),
        _m("openai/gpt-oss-120b", "GPT OSS 120B", 1_754_408_224, 131_072, 65_536),
        _m("whisper-large-v3", "Whisper", 1_693_721_698, 448, 448, False),
    ),
    "together": (
        _m("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Llama 3.3 70B", 1_733_443_200, 131_072),
        _m("deepseek-ai/DeepSeek-V3", "DeepSeek V3", 1_735_603_200, 131_072),
        _m("BAAI/bge-large-en-v1.5", "BGE Large", 1_696_118_400, 512, 0, False),
    ),
    "perplexity": (
        _m("sonar", "Sonar", 1_737_936_000, 127_072),
        _m("sonar-pro", "Sonar Pro", 1_737_936_000, 200_000),
        _m("sonar-reasoning-pro", "Sonar Reasoning Pro", 1_738_713_600, 127_072),
    ),
    "deepseek": (
        _m("deepseek-chat", "DeepSeek Chat", 1_735_603_200, 131_072),
        _m("deepseek-reasoner", "DeepSeek Reasoner", 1_737_331_200, 131_072, 65_536),
    ),
    "openrouter": (
        _m("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", 1_721_260_800, 128_000, 16_384),
        _m("anthropic/claude-sonnet-4.5", "Claude Sonnet 4.5", 1_759_161_676, 1_000_000),
        _m("google/gemini-2.5-flash", "Gemini 2.5 Flash", 1_750_172_488, 1_048_576, 65_535),
    ),
    "fireworks": (
        _m("accounts/fireworks/models/llama-v3p1-8b-instruct", "Llama 3.1 8B", 1_721_692_800),
        _m("accounts/fireworks/models/deepseek-v3", "DeepSeek V3", 1_735_603_200),
    ),
    "lmstudio": (
        _m("qwen2.5-7b-instruct", "Qwen2.5 7B Instruct", 1_726_531_200, 32_768),
        _m("text-embedding-nomic-embed-text-v1.5", "Nomic Embed", 1_708_300_800, 2_048, 0, False),
    ),
    "vllm": (_m("meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B", 1_721_692_800, 131_072),),
}
"""Each provider's default catalogue (by dialect or compat flavour name), in listing order."""


def catalog(provider: str, served: frozenset[str] | None) -> list[CatalogModel]:
    """What ``provider``'s models endpoint lists: the ``models=`` the emulator serves (sorted,
    all chat models), else the provider's default catalogue."""
    if served is None:
        return list(DEFAULTS[provider])
    return [_served(name) for name in sorted(served)]


def _served(name: str) -> CatalogModel:
    # A stable, plausible release time (2023-11 .. 2025-06) derived from the name.
    created = 1_700_000_000 + zlib.crc32(name.encode()) % 50_000_000
    return CatalogModel(name, name, created)


def page_token(offset: int) -> str:
    """The opaque token of the page that starts at ``offset``."""
    return base64.urlsafe_b64encode(f"emu:{offset}".encode()).decode().rstrip("=")


def read_page_token(token: str, models: Sequence[CatalogModel]) -> int | None:
    """The offset a token names, or None when it is not one of ours (or out of range)."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    if prefix != "emu" or not number.isdigit():
        return None
    offset = int(number)
    return offset if 0 < offset < len(models) else None


def page_size(text: str | None, default: int, maximum: int) -> int | None:
    """The page size a query asks for (``default`` when absent) capped at the emulator's
    :data:`PAGE_SIZE`; None when it is not an integer within [1, ``maximum``]."""
    if text is None:
        return min(default, PAGE_SIZE)
    try:
        number = float(text)  # Cohere's SDK types page_size as a float
    except ValueError:
        return None
    if not number.is_integer() or not 1 <= number <= maximum:
        return None
    return min(int(number), PAGE_SIZE)
