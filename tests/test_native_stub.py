"""The `_native.pyi` stub is part of the contract: it must match the runtime module."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import skinflint
from skinflint import _native

STUB = Path(skinflint.__file__).with_name("_native.pyi")


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def _stub_all() -> list[str]:
    for node in _stub_tree().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("_native.pyi has no __all__")


def test_stub_ships_in_package() -> None:
    assert STUB.is_file()


def test_every_stub_name_exists_with_the_same_kind() -> None:
    tree = _stub_tree()
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    names = _stub_all()
    assert set(names) == classes | functions
    for name in names:
        obj = getattr(_native, name)
        if name in classes:
            assert inspect.isclass(obj), name
        else:
            assert callable(obj) and not inspect.isclass(obj), name


def test_stub_methods_exist_on_runtime_classes() -> None:
    for node in _stub_tree().body:
        if not isinstance(node, ast.ClassDef):
            continue
        runtime = getattr(_native, node.name)
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                assert hasattr(runtime, item.name), f"{node.name}.{item.name} missing at runtime"


def test_exception_hierarchy() -> None:
    assert issubclass(_native.NativeError, Exception)
    assert issubclass(_native.KeyInputError, ValueError)
    assert issubclass(_native.RuleSetError, ValueError)
    assert issubclass(_native.CacheError, OSError)
    assert issubclass(_native.TokenizerError, ValueError)
    assert issubclass(_native.NativePanic, RuntimeError)
    for exc in (
        _native.KeyInputError,
        _native.RuleSetError,
        _native.CacheError,
        _native.TokenizerError,
        _native.NativePanic,
    ):
        assert issubclass(exc, _native.NativeError)


def test_version_matches_package() -> None:
    assert _native.__version__ == skinflint.__version__
    assert _native.__version__.count(".") == 2


def test_panic_is_a_catchable_exception_not_an_abort() -> None:
    try:
        _native._panic_for_test()
    except RuntimeError as exc:  # NativePanic is a RuntimeError, so `except Exception` sees it
        assert isinstance(exc, _native.NativePanic)
        assert "panic" in str(exc).lower()
    else:
        raise AssertionError("_panic_for_test returned normally")
    # The interpreter and the module still work afterwards.
    rules = _native.RuleSet.named("conservative")
    assert rules.canonicalize_text("  a  b ") == "a b"
