"""``flyllm models``: the models a provider offers to a key, from its models endpoint."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from flyllm._display import json_text, terminal_text
from flyllm.cli._common import FORMATTER, UsageError, err
from flyllm.errors import ConfigurationError, FlyLLMError
from flyllm.manager import LlmManager
from flyllm.providers.base import ModelInfo

__all__ = ["add", "run"]


def add(commands: Any) -> None:
    """Add the ``models`` sub-parser."""
    models = commands.add_parser(
        "models",
        help="list the models a provider offers to a key",
        formatter_class=FORMATTER,
        description="Ask a provider's models endpoint which models it offers to a key and\n"
        "print one id (the name to use as model=) per line. Gemini, Cohere, Mistral and\n"
        "Azure list only the models that can chat; Azure lists the resource's models,\n"
        "not its deployments. The key is never printed.",
        epilog="examples:\n  flyllm models openai\n  flyllm models gemini --json | jq '.[].id'\n"
        "  flyllm models azure --base-url https://my-resource.openai.azure.com\n"
        "  flyllm models ollama --base-url http://localhost:11434",
    )
    models.add_argument("provider", help="a provider name or alias (openai, anthropic, gemini...)")
    models.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key; default: the provider's usual variable (OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY, GOOGLE_API_KEY or GEMINI_API_KEY, CO_API_KEY, ...)",
    )
    models.add_argument("--base-url", metavar="URL", help="the provider's base URL, as in configs")
    models.add_argument("--api-version", metavar="V", help="the API version (Gemini, Azure...)")
    models.add_argument("--json", action="store_true", help="print a JSON array of model records")


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm models``; the exit code."""
    from flyllm.providers import requires_key, resolve_provider_type, spec_for

    ptype = resolve_provider_type(args.provider)
    names = spec_for(ptype).key_env  # the variables the official SDKs read
    key = args.api_key
    if key is None:
        key = next((os.environ[n] for n in names if os.environ.get(n)), "")
    if not key and requires_key(ptype):
        raise UsageError(
            f"no API key for {ptype.value}: pass --api-key or set {' or '.join(names)}"
        )

    async def fetch() -> list[ModelInfo]:
        async with LlmManager() as manager:
            return await manager.list_models(
                ptype, key, args.base_url, api_version=args.api_version
            )

    try:
        models = asyncio.run(fetch())
    except ConfigurationError:
        raise
    except FlyLLMError as exc:
        kind = exc.kind.value if exc.kind else type(exc).__name__
        err(f"flyllm models: {kind}: {exc}")
        return 1
    if args.json:
        print(json_text([model.to_dict() for model in models], indent=2))
    else:
        for model in models:
            print(terminal_text(model.id))
    return 0
