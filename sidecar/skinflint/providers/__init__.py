"""Providers: translate a ``Call`` into one provider's SDK request and its answer back.

The interface is ``base.Provider``; ``registry.build_providers`` turns the configured
``dict[str, ProviderSettings]`` into providers. Adapters: ``anthropic`` (Messages API) and
``openai_compat`` (OpenAI, vLLM and any OpenAI-compatible server).
"""
