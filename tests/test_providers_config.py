"""Provider settings, credentials, the registry, and the shared error helpers."""

from __future__ import annotations

import email.utils
from pathlib import Path

import pydantic
import pytest

from skinflint.errors import Code, ProviderNotConfigured
from skinflint.providers import _common
from skinflint.providers.anthropic import AnthropicProvider
from skinflint.providers.base import FailureKind, Provider
from skinflint.providers.credentials import KeySource, SecretKey
from skinflint.providers.openai_compat import OpenAICompatProvider
from skinflint.providers.registry import aclose_all, build_providers
from skinflint.providers.settings import ProviderSettings, default_providers

KEY = "sk-secret-value-0123456789abcdef"


# -- credentials ---------------------------------------------------------------------------


def test_secret_key_never_shows_itself() -> None:
    key = SecretKey(KEY)
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert KEY not in text
    assert key.get_secret_value() == KEY
    assert key == SecretKey(KEY)
    assert not SecretKey("")


def test_key_from_environment_variable() -> None:
    source = KeySource("anthropic", env="MY_KEY")
    key = source.resolve({"MY_KEY": f"  {KEY}\n"})
    assert key is not None and key.get_secret_value() == KEY


def test_key_file_wins_and_loses_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text(KEY + "\n")
    source = KeySource("openai", env="MY_KEY", file=secret)
    key = source.resolve({"MY_KEY": "from-env"})
    assert key is not None and key.get_secret_value() == KEY


def test_missing_file_falls_back_to_the_variable(tmp_path: Path) -> None:
    source = KeySource("openai", env="MY_KEY", file=tmp_path / "absent")
    key = source.resolve({"MY_KEY": KEY})
    assert key is not None and key.get_secret_value() == KEY


def test_missing_required_key_names_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        KeySource("anthropic", env="ANTHROPIC_API_KEY").resolve({})
    assert info.value.code is Code.FAILED_PRECONDITION
    assert info.value.provider == "anthropic"
    assert "ANTHROPIC_API_KEY" in str(info.value)

    path = tmp_path / "key"
    with pytest.raises(ProviderNotConfigured) as info:
        KeySource("openai", env="OPENAI_API_KEY", file=path).resolve({"OPENAI_API_KEY": " "})
    assert "OPENAI_API_KEY" in str(info.value) and str(path) in str(info.value)


def test_optional_key_may_be_absent() -> None:
    assert KeySource("vllm", env=None, required=False).resolve({}) is None


# -- settings ------------------------------------------------------------------------------


def test_default_providers() -> None:
    providers = default_providers()
    assert set(providers) == {"anthropic", "openai", "vllm"}
    assert providers["anthropic"].base_url is None  # the SDK default (honours *_BASE_URL)
    assert providers["anthropic"].key_source("anthropic").env == "ANTHROPIC_API_KEY"
    assert providers["openai"].key_source("openai").env == "OPENAI_API_KEY"
    vllm = providers["vllm"]
    assert vllm.base_url == "http://127.0.0.1:8000/v1"
    assert vllm.key_source("vllm").required is False
    assert vllm.max_concurrency == 64


def test_settings_are_strict_and_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        ProviderSettings.model_validate({"kind": "anthropic", "api_key": KEY})
    with pytest.raises(pydantic.ValidationError):
        ProviderSettings.model_validate({"kind": "gemini"})
    with pytest.raises(pydantic.ValidationError):
        ProviderSettings(kind="openai", max_concurrency=0)
    settings = ProviderSettings(kind="openai")
    with pytest.raises(pydantic.ValidationError):
        settings.base_url = "http://elsewhere"  # type: ignore[misc]


def test_secret_headers_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="api_key_env"):
        ProviderSettings(kind="openai", default_headers={"Authorization": f"Bearer {KEY}"})


def test_compatible_endpoints_need_a_url() -> None:
    with pytest.raises(pydantic.ValidationError, match="base_url"):
        ProviderSettings(kind="openai_compatible")
    settings = ProviderSettings.model_validate(
        {
            "kind": "openai_compatible",
            "base_url": "https://openrouter.ai/api/v1",
            "api_key_env": "OPENROUTER_API_KEY",
        }
    )
    source = settings.key_source("openrouter")
    assert source.env == "OPENROUTER_API_KEY" and source.required


# -- registry ------------------------------------------------------------------------------


async def test_build_providers_needs_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = {
        **default_providers(),
        "groq": ProviderSettings(
            kind="openai_compatible",
            base_url="https://api.groq.com/openai/v1",
            api_key_env="GROQ_API_KEY",
        ),
    }
    providers = build_providers(settings)
    assert list(providers) == ["anthropic", "openai", "vllm", "groq"]
    assert isinstance(providers["anthropic"], AnthropicProvider)
    assert isinstance(providers["groq"], OpenAICompatProvider)
    assert all(isinstance(p, Provider) for p in providers.values())
    assert [p.name for p in providers.values()] == list(providers)
    await aclose_all(providers)


# -- shared error helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, FailureKind.RATE_LIMITED),
        (529, FailureKind.OVERLOADED),
        (503, FailureKind.OVERLOADED),
        (500, FailureKind.SERVER),
        (502, FailureKind.SERVER),
        (408, FailureKind.TIMEOUT),
        (504, FailureKind.TIMEOUT),
        (401, FailureKind.AUTH),
        (403, FailureKind.AUTH),
        (400, FailureKind.INVALID),
        (404, FailureKind.INVALID),
        (413, FailureKind.INVALID),
        (422, FailureKind.INVALID),
    ],
)
def test_kind_for_status(status: int, kind: FailureKind) -> None:
    assert _common.kind_for_status(status) is kind


def test_retry_after_forms() -> None:
    assert _common.retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _common.retry_after_s({"retry-after": "3"}) == 3.0
    assert _common.retry_after_s({"retry-after": "0.5"}) == 0.5
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert _common.retry_after_s({"retry-after": date}, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert _common.retry_after_s({"retry-after": past}, now=now) == 0.0
    assert _common.retry_after_s({"retry-after": "soon"}) is None
    assert _common.retry_after_s({"retry-after-ms": "x", "retry-after": "-1"}) is None
    assert _common.retry_after_s({}) is None


def test_request_id_header() -> None:
    assert _common.header_request_id({"request-id": "req_a"}) == "req_a"
    assert _common.header_request_id({"x-request-id": "req_b"}) == "req_b"
    assert _common.header_request_id({}) is None


def test_clean_message_removes_the_key_and_partial_echoes() -> None:
    key = SecretKey(KEY)
    text = f"Incorrect API key provided: {KEY[:14]}***cdef. Full: {KEY}\n next line"
    cleaned = _common.clean_message(text, key)
    assert KEY not in cleaned
    assert KEY[:8] not in cleaned
    assert "\n" not in cleaned
    assert len(_common.clean_message("x" * 5000, key)) == _common.MAX_MESSAGE_CHARS
