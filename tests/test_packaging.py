"""Everything the installed package imports at run time is a declared runtime dependency.

`pip install . && skinflint serve` must work without the dev extras, so a third-party import
in `sidecar/skinflint` that is only satisfied by a dev/test package is a bug.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import skinflint

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(skinflint.__file__).parent


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


#: Optional extras whose packages are imported only on the path that needs them, with a clear
#: error naming the extra when missing (``skinflint project --png``: ``charts``).
OPTIONAL_EXTRAS = ("charts",)


def _runtime_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    requirements = [*project["dependencies"]]
    for extra in OPTIONAL_EXTRAS:
        requirements += optional.get(extra, [])
    return {_normalize(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]) for req in requirements}


def _top_level_imports() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"skinflint", "__future__"}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    declared = _runtime_requirements()
    providers = packages_distributions()
    missing = {
        name: providers.get(name, [name])
        for name in sorted(_top_level_imports())
        if not any(_normalize(dist) in declared for dist in providers.get(name, [name]))
    }
    assert not missing, (
        f"imported by sidecar/skinflint but not in [project].dependencies: {missing}"
    )
