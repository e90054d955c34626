"""The tutorials in docs/tutorials run, so they never rot: each notebook is executed top to bottom in
a fresh kernel of this interpreter (cwd a temporary directory, so nothing is written into the
repository), no cell may fail, and the cells tagged with what they show are checked: the audits'
verdicts, the planted slips' first wrong node, the HTML tables Jupyter displays."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="executing the notebooks needs nbformat: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="executing the notebooks needs nbclient: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="executing the notebooks needs ipykernel: pip install -e '.[test]'")
from conftest import requires_dot  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (installed with nbclient)
from jupyter_client.manager import KernelManager  # noqa: E402

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
CELL_TIMEOUT = 120  # seconds; each notebook runs in a few


def run(name: str, tmp_path: Path) -> dict[str, str]:
    """Execute the notebook; return, per tag, the text of its cell's outputs (stream text, plain text,
    HTML and errors)."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    spec = tmp_path / "kernels" / "tinygrad-bn-test"  # a kernel of this interpreter, whatever else is installed
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinygrad_bn tests", "language": "python"}))
    km = KernelManager(kernel_name="tinygrad-bn-test",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]))
    work = tmp_path / "cwd"
    work.mkdir()
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{name}: a cell failed:\n{e}")
    assert not list(work.iterdir()), f"{name} wrote files: {list(work.iterdir())}"
    shown = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text = []
        for out in cell.outputs:
            assert out.output_type != "error", f"{name}: cell {cell.id} raised {out.ename}: {out.evalue}"
            if out.output_type == "stream":
                text.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                text += [out.data[k] for k in ("text/plain", "text/html", "image/svg+xml") if k in out.data]
        for tag in cell.metadata.get("tags", []):
            shown[tag] = "\n".join(text)
    return shown


@requires_dot  # the notebook draws graphs
def test_batch_norm(tmp_path):
    shown = run("1_batch_norm.ipynb", tmp_path)
    assert "<table" in shown["compare"] and "all pass" in shown["compare"] and "FAIL" not in shown["compare"]
    for tag in ("audit", "audit_batch_norm"):
        assert "<table" in shown[tag] and "all pass" in shown[tag], tag
    assert "first wrong: var" in shown["slip"] and "failing nodes: ['var', 'xc', 'x']" in shown["slip"]
    assert "FAILED: first wrong at &#x27;var&#x27;" in shown["slip"]  # the Audit's HTML footer
    assert "<svg" in shown["draw"] and "FIRST WRONG" in shown["audit_draw"]
    for tag in ("html", "html_audit"):  # the interactive pages, each in its own frame
        assert "<iframe srcdoc=" in shown[tag], tag


def test_softmax_regression(tmp_path):
    pytest.importorskip("sklearn", reason="the digits come with scikit-learn: pip install -e '.[examples]'")
    shown = run("2_softmax_regression.ipynb", tmp_path)
    assert "<table" in shown["compare"] and "all pass" in shown["compare"] and "FAIL" not in shown["compare"]
    last = shown["train"].strip().splitlines()[-1]
    assert last.startswith("46 steps"), last
    accuracy = float(last.split("test accuracy ")[1].split(";")[0])
    worst = float(last.split("(y_hat - y)/m: ")[1].split()[0])
    assert accuracy > 0.9 and worst < 4e-15, last


@requires_dot
def test_prove_your_layer(tmp_path):
    shown = run("3_prove_your_layer.ipynb", tmp_path)
    assert "<table" in shown["audit"] and "all pass" in shown["audit"]
    assert "first wrong: b\n" in shown["slip"] and "FAIL: hand" in shown["slip"]
    assert "FIRST WRONG" in shown["audit_draw"]
    assert "first wrong: x\n" in shown["one_path"]
    assert "<table" in shown["function"] and "all pass" in shown["function"]
    assert "RuntimeError: Gate.backward returned ndarrays" in shown["twice"]
    assert "gradcheck, fast mode: True" in shown["gradcheck"] and "gradgradcheck: True" in shown["gradgradcheck"]
