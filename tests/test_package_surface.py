"""Each package's lazy re-exports: typed for type checkers, resolved on first use, loading nothing on import.

``streaming``, ``snapshotter`` and ``monitor`` name their API in ``__all__`` and import each name on first use
(``__getattr__`` over ``_WHERE``), so ``livelearn --help`` loads no model and no client library. A type checker
does not run ``__getattr__``: the same names are imported under ``TYPE_CHECKING``, from the same modules. The
three lists (``__all__``, ``_WHERE``, the ``TYPE_CHECKING`` imports) are read from the source and must agree.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("streaming", "snapshotter", "monitor")
ROOT = Path(__file__).resolve().parent.parent


def surface(package: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """``__all__``, ``_WHERE`` (name → module) and the ``TYPE_CHECKING`` imports (name → module) of ``package``."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    assigned = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module, ast.unparse(statement)
                typed.update({alias.asname or alias.name: statement.module for alias in statement.names})
    return assigned["__all__"], assigned["_WHERE"], typed


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_imported_for_type_checkers_from_where_it_is_found(package):
    exported, where, typed = surface(package)
    assert len(set(exported)) == len(exported), f"{package}.__all__ names a name twice"
    assert set(where) == set(exported), f"{package}: __all__ and _WHERE differ by {sorted(set(where) ^ set(exported))}"
    wrong = {name: (typed.get(name), module) for name, module in where.items() if typed.get(name) != module}
    assert not wrong, f"{package}: TYPE_CHECKING imports differ from _WHERE (name: (typed from, found in)): {wrong}"
    assert set(typed) == set(exported), f"{package}: imported for type checkers only: {sorted(set(typed) - set(where))}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_at_run_time_to_the_module_s_own_object(package):
    exported, where, _ = surface(package)
    module = importlib.import_module(package)
    for name in exported:
        assert getattr(module, name) is getattr(importlib.import_module(where[name]), name), f"{package}.{name}"
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(module, "no_such_name")  # noqa: B009 — the module's __getattr__ is under test


def test_importing_the_packages_loads_none_of_what_they_export():
    """The ``TYPE_CHECKING`` imports stay out of run time: a bare import loads only the packages themselves."""
    code = (
        "import json, sys\n"
        "import monitor, snapshotter, streaming\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('streaming', 'snapshotter', 'monitor', 'river', 'numba', 'redis', 'pydantic', 'pydantic_settings'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["monitor", "snapshotter", "streaming"]
