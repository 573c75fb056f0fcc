"""Helpers for the emulator tests: prompt builders and raw-HTTP readers (SSE, Prometheus).

Imported by ``tests/test_emulator_*.py``; each module defines its own fixtures with these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

ANTHROPIC_MODEL = "claude-sonnet-4-6"  # minimum cacheable prompt: 1024 tokens
ANTHROPIC_KEY = "sk-ant-emulator-test"
OPENAI_KEY = "sk-openai-emulator-test"


def words(n: int, word: str = "lorem") -> str:
    """Exactly ``n`` tokens for the emulators' word-piece tokenizer (``word`` is letters)."""
    return " ".join([word] * n)


async def post_json(
    url: str, body: Any, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """POST raw JSON (no SDK): status, lower-cased headers, body text."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps(body), headers=dict(headers or {})) as resp,
    ):
        text = await resp.text()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, text


async def get_text(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=dict(headers or {})) as resp,
    ):
        return resp.status, await resp.text()


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """Server-sent events as (event name or None, data) pairs, in order."""
    events: list[tuple[str | None, str]] = []
    for raw in text.split("\n\n"):
        if not raw.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in raw.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, "\n".join(data)))
    return events


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, f"not a Prometheus sample line: {line!r}"
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples.append((match["name"], labels, float(match["value"])))
    return samples


def metric(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    found = [v for n, lab, v in samples if n == name and labels.items() <= lab.items()]
    assert found, f"metric {name} {labels} missing"
    return sum(found)
