"""The package as a stranger gets it: a wheel built from this checkout, installed into a bare venv
(no checkout on the path, no extras), where `import`, `tinygrad-bn --version`, `check --quick` and
`demo` work, and the wheel carries its licence, py.typed and the interactive page's template."""
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import requires_dot

import tinygrad_bn as tg

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A wheel, and a fresh venv with it installed (its dependencies from the package index)."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                            "-w", str(tmp)], capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"could not build a wheel here: {built.stderr[-300:]}")
    wheel = next(tmp.glob("tinygrad_bn-*.whl"))
    env = tmp / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    got = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True)
    if got.returncode:
        pytest.skip(f"no package index reachable to install numpy and graphviz: {got.stderr[-300:]}")
    return wheel, env


def run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_the_wheel_carries_its_licence_types_and_page_template(bare):
    wheel, _ = bare
    names = zipfile.ZipFile(wheel).namelist()
    assert "tinygrad_bn/py.typed" in names and "tinygrad_bn/graph_page.html" in names
    assert any(n.endswith(".dist-info/LICENSE") or "licenses/LICENSE" in n for n in names), names[-8:]
    assert f"tinygrad_bn-{tg.__version__}-" in wheel.name


@requires_dot
def test_a_bare_venv_imports_and_runs_the_commands(bare, tmp_path):
    _, env = bare
    imported = run(env, "python", "-c", "import tinygrad_bn as tg, tinygrad_bn.nn as nn; "
                   "print(tg.__version__, tg.__file__)", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    version, where = imported.stdout.split()
    assert version == tg.__version__ and str(ROOT) not in where  # the wheel's copy, not this checkout
    assert run(env, "tinygrad-bn", "--version", cwd=tmp_path).stdout.strip() == f"tinygrad-bn {tg.__version__}"
    check = run(env, "tinygrad-bn", "check", "--quick", cwd=tmp_path)
    assert check.returncode == 0 and check.stdout.rstrip().endswith("PASS: 0 failing case(s)"), check.stderr
    demo = run(env, "tinygrad-bn", "demo", "--out", str(tmp_path / "gallery"), cwd=tmp_path)
    assert demo.returncode == 0 and "Traceback" not in demo.stderr, demo.stderr[-2000:]
    assert (tmp_path / "gallery" / "index.html").exists() and (tmp_path / "gallery" / "interactive.html").exists()
