"""The import order is not load-bearing: every submodule can be the first one imported, and the
imports stay sorted (so an import sorter, which would reorder them, cannot break the package)."""
import ast
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tinygrad_bn

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(tinygrad_bn.__file__).parent
SUBMODULES = sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "tinygrad_bn.")
                    if m.name != "tinygrad_bn.__main__")


def _uses_finished_package(module: str) -> bool:
    """Whether `module` imports tinygrad_bn itself (the CLI, the reports): __init__ does not import
    such a module, so it never meets the package half-initialized."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    return any(isinstance(n, ast.Import) and any(a.name.split(".")[0] == "tinygrad_bn" for a in n.names)
               or isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").split(".")[0] == "tinygrad_bn"
               for n in ast.parse(source).body)


CORE = [m for m in SUBMODULES if not _uses_finished_package(m)]

# The package without its __init__ (a bare module with the package's path), so the module under test is
# really the first of the package to load, whatever order __init__ lists its imports in; then __init__ runs.
FIRST = """
import importlib, importlib.util, sys, types
spec = importlib.util.find_spec("tinygrad_bn")
package = types.ModuleType("tinygrad_bn")
package.__path__, package.__spec__, package.__file__ = list(spec.submodule_search_locations), spec, spec.origin
sys.modules["tinygrad_bn"] = package
importlib.import_module(sys.argv[1])
with open(spec.origin) as f:
    exec(compile(f.read(), spec.origin, "exec"), package.__dict__)
import tinygrad_bn as tg
x = tg.tensor([1.0, 2.0], requires_grad=True)
(x * x + x).sum().backward()
assert x.grad.numpy().tolist() == [3.0, 5.0], x.grad
"""


def _run(*args: str) -> None:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("module", CORE)
def test_each_module_can_load_before_the_rest_of_the_package(module):
    _run("-c", FIRST, module)


@pytest.mark.parametrize("module", SUBMODULES)
def test_each_submodule_imports_first_in_a_fresh_interpreter(module):
    _run("-c", f"import {module}")


def test_the_core_is_among_them():
    assert {"tinygrad_bn.engine", "tinygrad_bn.guards", "tinygrad_bn.ops", "tinygrad_bn.tensor"} <= set(CORE)


def test_imports_are_sorted():
    ruff = Path(sys.executable).parent / "ruff"  # the one the test extra installs, else one on PATH
    ruff = ruff if ruff.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    r = subprocess.run([ruff, "check", "--select", "I", "--no-cache", "."], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
