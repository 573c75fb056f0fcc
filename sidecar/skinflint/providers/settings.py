"""Per-provider configuration: one ``ProviderSettings`` per configured endpoint.

The pipeline's config embeds ``dict[str, ProviderSettings]`` keyed by the provider's name
(the ``provider/`` prefix of a model id). Anthropic and OpenAI are built in; any other
OpenAI-compatible endpoint (Gemini's, OpenRouter, Groq, a local server) is added by config
alone with ``kind: openai_compatible`` and a ``base_url``. Keys are never written in config:
only the name of the variable or the path of the secret file that holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skinflint.providers.credentials import KeySource

ProviderKind = Literal["anthropic", "openai", "openai_compatible", "vllm"]

#: The variable each kind reads when ``api_key_env`` is not given (None: no key by default).
DEFAULT_KEY_ENV: dict[str, str | None] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openai_compatible": None,
    "vllm": None,
}

# Headers that carry credentials: a secret in ``default_headers`` would sit in plain config.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})

DEFAULT_VLLM_URL = "http://127.0.0.1:8000/v1"


class ProviderSettings(BaseModel):
    """How to reach one provider endpoint. Unknown keys are an error (typos fail at boot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ProviderKind
    #: None = the SDK's own default, which honours ``ANTHROPIC_BASE_URL`` / ``OPENAI_BASE_URL``.
    base_url: str | None = None
    #: Variable holding the key; None = the kind's default (``DEFAULT_KEY_ENV``).
    api_key_env: str | None = None
    #: A mounted secret file holding the key (checked before the variable).
    api_key_file: Path | None = None
    #: In-flight requests allowed to this endpoint at once (the rest wait for a slot).
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    #: Extra, non-secret headers sent on every request (e.g. an OpenRouter ``HTTP-Referer``).
    default_headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("default_headers")
    @classmethod
    def _no_secret_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        secret = sorted(h for h in headers if h.lower() in _SECRET_HEADERS)
        if secret:
            raise ValueError(
                f"{', '.join(secret)} carries a credential; use api_key_env or api_key_file"
            )
        return headers

    @model_validator(mode="after")
    def _compatible_needs_url(self) -> ProviderSettings:
        if self.kind in ("openai_compatible", "vllm") and not self.base_url:
            raise ValueError(f"kind {self.kind!r} needs a base_url (the server's /v1 URL)")
        return self

    def key_source(self, name: str) -> KeySource:
        """Where this provider's key comes from. Anthropic and OpenAI always need one; other
        endpoints need one only when a variable or file is configured for it."""
        env = self.api_key_env or DEFAULT_KEY_ENV[self.kind]
        required = self.kind in ("anthropic", "openai") or (
            self.api_key_env is not None or self.api_key_file is not None
        )
        return KeySource(provider=name, env=env, file=self.api_key_file, required=required)


def default_providers() -> dict[str, ProviderSettings]:
    """The providers a sidecar knows without configuration: Anthropic and OpenAI (keys from
    their usual variables, read only when used) and a local vLLM with no key."""
    return {
        "anthropic": ProviderSettings(kind="anthropic"),
        "openai": ProviderSettings(kind="openai"),
        "vllm": ProviderSettings(kind="vllm", base_url=DEFAULT_VLLM_URL),
    }


__all__ = ["DEFAULT_KEY_ENV", "ProviderKind", "ProviderSettings", "default_providers"]
