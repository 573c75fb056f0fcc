"""Imports flow transports -> pipeline -> providers, never back; the pipeline knows no wire.

``skinflint.call`` (the provider-neutral request) is the shared vocabulary of all layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import skinflint

PACKAGE = Path(skinflint.__file__).parent
#: package -> module prefixes it must never import
FORBIDDEN = {
    "pipeline": (
        "grpc",
        "grpc_",
        "google.rpc",
        "skinflint.v1",
        "skinflint.transports",
        "skinflint.app",
    ),
    "providers": (
        "grpc",
        "skinflint.v1",
        "skinflint.transports",
        "skinflint.app",
        "skinflint.pipeline",
    ),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_upwards(layer: str) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            bad = [p for p in FORBIDDEN[layer] if name == p.rstrip("_") or name.startswith(p)]
            assert not bad, f"{path.relative_to(PACKAGE)} imports {name}"


def test_call_is_shared_vocabulary() -> None:
    # The Call is read by every layer, so it lives beside them, not inside one of them.
    assert (PACKAGE / "call.py").is_file()
