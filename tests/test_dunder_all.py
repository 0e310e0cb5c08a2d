"""Every ``__all__`` in the shipped packages is a literal list of strings that tools can read
without importing the module, and names only things the module really exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _static_all(path: Path) -> list[str] | None:
    """The names of the module's ``__all__``; fails the test if it is not a literal."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.AugAssign):
            targets, value = [node.target], None
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        assert isinstance(value, (ast.List, ast.Tuple)), (
            f"{path}:{node.lineno}: __all__ must be a literal list or tuple"
        )
        names = []
        for elt in value.elts:
            assert isinstance(elt, ast.Constant) and isinstance(elt.value, str), (
                f"{path}:{node.lineno}: __all__ must hold string literals only"
            )
            names.append(elt.value)
        return names
    return None


MODULES = sorted(p for p in SRC.rglob("*.py") if "__all__" in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_dunder_all_is_a_literal_naming_real_exports(path: Path) -> None:
    names = _static_all(path)
    if names is None:  # mentions __all__ without defining it
        return
    assert len(set(names)) == len(names), f"{path}: duplicate names in __all__"
    module = importlib.import_module(_module_name(path))
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == [], f"{path}: __all__ names what the module does not have"
