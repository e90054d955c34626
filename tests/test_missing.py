"""A piece the user may not have, simulated missing: Graphviz's dot (PATH without it), scikit-learn and
matplotlib (None in sys.modules), apt-get (run.sh on a PATH without it). Each says what to install and
stops without a traceback (or, for Chromium, skips the browser tests)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import graphviz
import numpy as np
import pytest

import tinygrad_bn as tg
from tinygrad_bn._missing import DotNotFoundError, MissingExtraError

ROOT = Path(__file__).resolve().parent.parent
INSTALL_DOT = ("sudo apt-get install graphviz", "brew install graphviz", "conda install graphviz")
INSTALL_EXTRA = ('pip install "tinygrad-bn[examples]"', 'pip install -e ".[examples]"')


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # shutil.which and graphviz's subprocess both look here
    return empty


def test_load_digits_without_scikit_learn_names_the_extra(monkeypatch):
    from tinygrad_bn.data import load_digits
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingExtraError) as info:
        load_digits()
    assert isinstance(info.value, ImportError) and "scikit-learn" in str(info.value)
    assert all(command in str(info.value) for command in INSTALL_EXTRA), str(info.value)


def test_the_gallery_without_dot_says_how_to_install_it_and_writes_nothing(no_dot, tmp_path):
    from tinygrad_bn.gallery import render_gallery
    with pytest.raises(DotNotFoundError) as info:
        render_gallery(tmp_path / "gallery")
    assert isinstance(info.value, graphviz.ExecutableNotFound)  # what graphviz users already catch
    assert all(command in str(info.value) for command in INSTALL_DOT), str(info.value)
    assert not (tmp_path / "gallery").exists()


def test_to_html_without_dot_says_how_to_install_it(no_dot):
    x = tg.tensor(np.ones(3), requires_grad=True, name="x")
    with pytest.raises(DotNotFoundError, match="(?s)tg.viz.to_html.*sudo apt-get install graphviz"):
        tg.viz.to_html((x * 2).sum())


def run_example(script: str, block: tuple[str, ...] = (), env: dict | None = None) -> subprocess.CompletedProcess:
    """Run examples/SCRIPT --quick with the modules `block` made unimportable (None in sys.modules)."""
    code = ("import runpy, sys\n"
            f"for m in {block!r}: sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(ROOT / 'examples')!r})\n"
            f"sys.argv = [{script!r}, '--quick']\n"
            f"runpy.run_path({str(ROOT / 'examples' / script)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("block", [("sklearn",), ("matplotlib",), ("sklearn", "matplotlib")])
def test_an_example_without_the_extra_says_which_to_install_before_training(block):
    done = run_example("2_batchnorm_speedup.py", block)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(command in done.stderr for command in INSTALL_EXTRA), done.stderr
    assert done.stdout == ""  # stopped before any training


def test_an_example_that_draws_says_how_to_install_dot(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_example("7_backprop_ninja.py", env={**os.environ, "PATH": str(empty)})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(command in done.stderr for command in INSTALL_DOT), done.stderr
    assert "tinygrad-bn[examples]" not in done.stderr  # example 7 needs only dot


def fake_checkout(tmp_path: Path, tools: dict[str, str]) -> tuple[Path, dict]:
    """run.sh in a folder of its own with a stand-in .venv (its python and ruff only echo), and a PATH
    of the basic tools run.sh uses plus `tools` (name -> shell script body)."""
    repo, bin_ = tmp_path / "repo", tmp_path / "bin"
    (repo / ".venv" / "bin").mkdir(parents=True)
    bin_.mkdir()
    shutil.copy(ROOT / "run.sh", repo / "run.sh")
    (repo / "pyproject.toml").write_text("[project]\nname = 'stand-in'\n")
    for name in ("python", "ruff", "tinygrad-bn"):
        stub = repo / ".venv" / "bin" / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        stub.chmod(0o755)
    for name in ("dirname", "id", "cat", "cksum", "cut", "touch"):
        os.symlink(shutil.which(name), bin_ / name)
    for name, body in tools.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    stamp = subprocess.run(f"cat {repo / 'pyproject.toml'} | cksum | cut -d' ' -f1", shell=True, capture_output=True,
                           text=True).stdout.strip()
    (repo / ".venv" / f".installed-{stamp}").write_text("")
    return repo, {"PATH": str(bin_), "HOME": str(tmp_path)}


@pytest.mark.skipif(os.name != "posix" or shutil.which("bash") is None, reason="run.sh is a bash script")
def test_run_sh_without_dot_and_apt_get_says_what_to_install_and_stops(tmp_path):
    repo, env = fake_checkout(tmp_path, {})
    done = subprocess.run([shutil.which("bash"), str(repo / "run.sh"), "demo"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "apt-get is not available" in done.stderr and "Install it by hand" in done.stderr, done.stderr
    assert all(command in done.stderr for command in INSTALL_DOT), done.stderr
    assert "tinygrad-bn" not in done.stdout  # stopped before the job


@pytest.mark.skipif(os.name != "posix" or shutil.which("bash") is None, reason="run.sh is a bash script")
def test_run_sh_without_chromium_and_apt_get_runs_the_tests_with_the_browser_tests_skipped(tmp_path):
    repo, env = fake_checkout(tmp_path, {"dot": "exit 0"})
    done = subprocess.run([shutil.which("bash"), str(repo / "run.sh"), "test", "-q"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no Chromium, and no apt-get" in done.stderr and "will be skipped" in done.stderr, done.stderr
    assert "python -m pytest -q" in done.stdout and "ruff check ." in done.stdout  # the job ran on
