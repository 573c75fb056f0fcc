"""Building the configured providers, and closing them.

``build_providers`` creates no network connection and reads no key: each provider resolves
its key and opens its client on first use, so the sidecar boots with any subset of keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from skinflint.providers.anthropic import AnthropicProvider
from skinflint.providers.base import Provider
from skinflint.providers.openai_compat import OpenAICompatProvider
from skinflint.providers.settings import ProviderSettings


def build_provider(name: str, settings: ProviderSettings) -> Provider:
    """The provider for one configured endpoint (``settings.kind`` picks the adapter)."""
    if settings.kind == "anthropic":
        return AnthropicProvider(name, settings)
    return OpenAICompatProvider(name, settings)


def build_providers(settings: Mapping[str, ProviderSettings]) -> dict[str, Provider]:
    """One provider per configured name, in configuration order."""
    return {name: build_provider(name, entry) for name, entry in settings.items()}


async def aclose_all(providers: Mapping[str, Provider]) -> None:
    """Close every provider's client (all of them, even if one fails; the first error wins)."""
    results = await asyncio.gather(
        *(provider.aclose() for provider in providers.values()), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


__all__ = ["aclose_all", "build_provider", "build_providers"]
