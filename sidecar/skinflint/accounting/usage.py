"""One provider-neutral ``Usage`` and the normalizers that build it from each provider's own.

Providers disagree on what "input tokens" means, and every way of getting that wrong bills
money twice or not at all:

* Anthropic's ``input_tokens`` already **excludes** cache reads and writes; the prompt is
  ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``.
* OpenAI's ``cached_tokens`` (and ``cache_write_tokens``) are **subsets** of ``prompt_tokens``;
  the uncached input is ``prompt_tokens - cached_tokens - cache_write_tokens``.

``Usage`` fixes one meaning: the five billed token classes are disjoint, so cost is a plain
sum of tokens x rate with nothing counted twice. ``reasoning_tokens`` is informational: it is a
part of ``output_tokens`` (already billed there), never added to it.

Normalizers accept the provider's JSON as a dict or the official SDK's object, treat missing
or ``None`` fields as 0 (providers omit fields they did not use), and raise ``UsageError`` on
negative or non-integer counts, which means the response is not what the provider documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from skinflint.errors import InternalError

_SUBTRACTED = "a subset of prompt_tokens"


class UsageError(InternalError, ValueError):
    """A usage report that breaks the provider's documented shape (names provider and field)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, split into disjoint billed classes (all ints >= 0).

    ``input_tokens`` excludes cache reads and writes. Cache writes are split by TTL because
    Anthropic bills 5-minute and 1-hour writes differently; a provider with a single write TTL
    (OpenAI's 30-minute writes) reports them as ``cache_write_5m_tokens``, the short-TTL slot.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: Part of ``output_tokens`` spent thinking; informational, never billed on its own.
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_count("Usage", f.name, getattr(self, f.name))

    @property
    def cache_write_tokens(self) -> int:
        """Tokens written to the cache, any TTL."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt: uncached input plus cache reads and writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


# --- Anthropic --------------------------------------------------------------------------------

_ANTHROPIC_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "output_tokens_details",
)


def from_anthropic(usage: Any, *, provider: str = "anthropic") -> Usage:
    """Usage from an Anthropic ``usage`` object (Messages API, batch results).

    ``input_tokens`` is taken as is: Anthropic already excludes cached tokens from it. The
    1h/5m split comes from ``cache_creation``; without it, all of
    ``cache_creation_input_tokens`` counts as 5m (the default TTL, and the only one before the
    split existed). ``cache_creation_input_tokens`` is the billed total: if the split does not
    add up to it, the total wins (the 1h count is kept up to the total, the rest is 5m).
    """
    return _anthropic({name: _get(usage, name) for name in _ANTHROPIC_FIELDS}, provider)


def from_anthropic_stream(message_start_usage: Any, final_message_delta_usage: Any) -> Usage:
    """Usage of a streamed Anthropic call from ``message_start`` and the last ``message_delta``.

    ``message_delta.usage`` is cumulative and overwrites (as the official SDK does): each field
    it carries replaces ``message_start``'s, so output is never added twice. Cache counts come
    from ``message_start`` unless the delta carries them; a delta without them must not turn
    cached tokens into zero (or into full-price input).
    """
    merged = {name: _get(message_start_usage, name) for name in _ANTHROPIC_FIELDS}
    for name in _ANTHROPIC_FIELDS:
        value = _get(final_message_delta_usage, name)
        if value is not None:
            merged[name] = value
    return _anthropic(merged, "anthropic stream")


def _anthropic(raw: Mapping[str, Any], provider: str) -> Usage:
    count = _Counter(provider)
    input_tokens = count("input_tokens", raw["input_tokens"])
    output_tokens = count("output_tokens", raw["output_tokens"])
    cache_read = count("cache_read_input_tokens", raw["cache_read_input_tokens"])
    total_raw = raw["cache_creation_input_tokens"]
    split = raw["cache_creation"]
    split_5m_raw = _get(split, "ephemeral_5m_input_tokens")
    split_1h_raw = _get(split, "ephemeral_1h_input_tokens")
    split_5m = count("cache_creation.ephemeral_5m_input_tokens", split_5m_raw)
    split_1h = count("cache_creation.ephemeral_1h_input_tokens", split_1h_raw)
    if total_raw is None:
        write_5m, write_1h = split_5m, split_1h
    else:
        total = count("cache_creation_input_tokens", total_raw)
        if split_5m_raw is None and split_1h_raw is None:
            write_5m, write_1h = total, 0
        else:
            write_1h = min(split_1h, total)
            write_5m = total - write_1h
    reasoning = count(
        "output_tokens_details.thinking_tokens",
        _get(raw["output_tokens_details"], "thinking_tokens"),
    )
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        reasoning_tokens=reasoning,
    )


# --- OpenAI and vLLM ---------------------------------------------------------------------------


def from_openai(usage: Any, *, provider: str = "openai") -> Usage:
    """Usage from an OpenAI ``usage`` object: Chat Completions or Responses/Batch shape.

    Chat: ``prompt_tokens`` / ``prompt_tokens_details`` / ``completion_tokens`` /
    ``completion_tokens_details``; Responses and Batch: ``input_tokens`` /
    ``input_tokens_details`` / ``output_tokens`` / ``output_tokens_details``. ``cached_tokens``
    and ``cache_write_tokens`` are parts of the prompt, so they are subtracted from it, never
    billed on top of it; if they exceed the prompt the report is inconsistent and raises.
    """
    count = _Counter(provider)
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        prompt_key, output_key = "prompt_tokens", "completion_tokens"
    else:
        prompt_key, output_key = "input_tokens", "output_tokens"
    prompt = count(prompt_key, _get(usage, prompt_key))
    output = count(output_key, _get(usage, output_key))
    details = _get(usage, f"{prompt_key}_details")
    cached = count(f"{prompt_key}_details.cached_tokens", _get(details, "cached_tokens"))
    written = count(f"{prompt_key}_details.cache_write_tokens", _get(details, "cache_write_tokens"))
    out_details = _get(usage, f"{output_key}_details")
    reasoning = count(
        f"{output_key}_details.reasoning_tokens", _get(out_details, "reasoning_tokens")
    )
    if cached + written > prompt:
        raise UsageError(
            f"{provider} usage: cached_tokens ({cached}) + cache_write_tokens ({written}) exceed "
            f"{prompt_key} ({prompt}); they are documented as {_SUBTRACTED}"
        )
    return Usage(
        input_tokens=prompt - cached - written,
        output_tokens=output,
        cache_read_tokens=cached,
        cache_write_5m_tokens=written,
        reasoning_tokens=reasoning,
    )


def from_vllm(usage: Any) -> Usage:
    """Usage from vLLM's OpenAI-compatible ``usage``.

    Same shape as OpenAI; ``prompt_tokens_details.cached_tokens`` is only filled when the
    server runs with ``--enable-prompt-tokens-details``, so without it every prompt token is
    counted as uncached input (the honest reading of what was reported).
    """
    return from_openai(usage, provider="vllm")


# --- helpers -----------------------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    """A field of a JSON dict or an SDK object; ``None`` when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _check_count(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{owner}.{name}: expected a non-negative integer, got {value!r}")
    if value < 0:
        raise UsageError(f"{owner}.{name}: expected a non-negative integer, got {value}")
    return value


class _Counter:
    """Reads one provider's counts: ``None`` -> 0, anything but an int >= 0 -> ``UsageError``."""

    def __init__(self, provider: str) -> None:
        self._owner = f"{provider} usage"

    def __call__(self, name: str, value: object) -> int:
        return 0 if value is None else _check_count(self._owner, name, value)


__all__ = [
    "Usage",
    "UsageError",
    "from_anthropic",
    "from_anthropic_stream",
    "from_openai",
    "from_vllm",
]
