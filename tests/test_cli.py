"""`tinygrad-bn`: a user's mistake in a value is an argparse error naming the flag (exit status 2, no
traceback); a missing piece (Graphviz's dot, scikit-learn) is a message saying what to install and a
non-zero exit, no traceback, no stray file; what demo and check print fits 100 columns."""
import os
import subprocess
import sys

import pytest
from conftest import requires_dot

from tinygrad_bn.cli import main

BAD = [  # (arguments, the flag the message must name, words of the message)
    (["train", "--epochs", "0"], "--epochs", "must be an integer >= 1, got 0"),
    (["train", "--epochs", "-3"], "--epochs", "must be an integer >= 1"),
    (["train", "--epochs", "2.5"], "--epochs", "expected an integer, got '2.5'"),
    (["train", "--lr", "-1"], "--lr", "must be a number in (0, inf), got -1"),
    (["train", "--lr", "0"], "--lr", "must be a number in (0, inf), got 0"),
    (["train", "--lr", "0.1", "nan"], "--lr", "got nan"),
    (["train", "--lr", "inf"], "--lr", "got inf"),
    (["train", "--lr", "fast"], "--lr", "expected a number, got 'fast'"),
    (["train", "--width", "0"], "--width", "must be an integer >= 1, got 0"),
    (["train", "--depth", "0"], "--depth", "must be an integer >= 1, got 0"),
    (["train", "--target", "5"], "--target", "must be a number in (0, 1], got 5"),
    (["train", "--target", "0"], "--target", "must be a number in (0, 1], got 0"),
    (["train", "--target", "-0.5"], "--target", "in (0, 1]"),
    (["train", "--seed", "-1"], "--seed", "must be an integer >= 0, got -1"),
    (["demo", "--seed", "-1"], "--seed", "must be an integer >= 0, got -1"),
    (["check", "--seed", "x"], "--seed", "expected an integer, got 'x'"),
]


@pytest.mark.parametrize("argv, flag, words", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_a_bad_value_is_an_argparse_error_naming_the_flag(argv, flag, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"argument {flag}: " in err and words in err, err
    assert "Traceback" not in err


def run(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinygrad_bn", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


@pytest.mark.parametrize("args", [("train", "--epochs", "0"), ("train", "--lr", "-1"), ("train", "--target", "5")])
def test_a_bad_value_from_the_shell_exits_2_without_a_traceback(args):
    done = run(*args)
    assert done.returncode == 2 and args[1] in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_good_values_are_still_accepted(capsys):
    pytest.importorskip("sklearn", reason="train needs the digits: pip install -e '.[examples]'")
    assert main(["train", "--epochs", "1", "--lr", "0.1", "--depth", "1", "--width", "4", "--target", "1",
                 "--seed", "0", "--no-progress"]) == 0
    assert "MLP 64 -> 1 x 4 -> 10" in capsys.readouterr().out


def test_demo_without_dot_prints_the_report_then_says_how_to_install_it(tmp_path):
    """No `dot` on PATH: the report runs whole, then a message with the install commands, exit status 1,
    no traceback, and no folder or file left behind."""
    empty = tmp_path / "bin"
    empty.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    done = run("demo", "--out", "gallery", env={**os.environ, "PATH": str(empty)}, cwd=work)
    assert done.returncode == 1, done.stderr
    assert "== 2. autograd against finite differences" in done.stdout and "PASS: 0 failing case(s)" in done.stdout
    for command in ("sudo apt-get install graphviz", "brew install graphviz", "conda install graphviz",
                    "tinygrad-bn demo --out ''"):
        assert command in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not list(work.iterdir())  # no half-made gallery, no stray .gv source


def test_demo_without_dot_in_process(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # shutil.which and graphviz both look here
    assert main(["demo", "--out", str(tmp_path / "gallery")]) == 1
    captured = capsys.readouterr()
    assert "PASS" in captured.out and "sudo apt-get install graphviz" in captured.err
    assert not (tmp_path / "gallery").exists()


@requires_dot
def test_demo_into_a_folder_it_cannot_write_is_a_message(tmp_path, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "gallery")]) == 1  # a folder inside a file
    err = capsys.readouterr().err
    assert "cannot write the graphs into" in err and "Traceback" not in err


def test_train_without_scikit_learn_says_which_extra_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["train", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert 'pip install "tinygrad-bn[examples]"' in err and 'pip install -e ".[examples]"' in err, err
    assert "scikit-learn" in err and "Traceback" not in err


def test_demo_and_check_fit_100_columns_and_a_float32_underflow_reads_0(capsys):
    main(["demo", "--out", ""])
    demo = capsys.readouterr().out.splitlines()
    main(["check", "--quick", "--audit"])
    check = capsys.readouterr().out.splitlines()
    for name, lines in (("demo", demo), ("check --quick --audit", check)):
        long = [line for line in lines if len(line) > 100]
        assert not long, f"{name}: {len(long)} lines over 100 columns, e.g.\n" + "\n".join(long[:3])
    # softmax-CE at logits ~ 1e4: the float64 truth holds 1e-101, below float32's range; float32 gives 0
    row = next(line for line in demo if line.startswith("softmax-CE, logits ~ 1e4") and "float32" in line)
    assert row.split()[-3:] == ["0.000e+00", "0.000e+00", "pass"], row
