"""docs/ stays true to the code: every public name is in docs/api.md, every name it documents exists
(with the code's parameter names), the course notes cite tests that exist, nothing in the repository
points outside it, and every relative link in README.md and docs/*.md reaches a file (and heading)."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
ROOTS = {"tg": tg, "nn": nn, "F": F, "Tensor": tg.Tensor}
# classes whose public methods and properties are API too (Tensor: every public attribute)
CLASSES = {"nn.Module": nn.Module, "tg.optim.Optimizer": tg.optim.Optimizer, "tg.check.Audit": tg.check.Audit,
           "tg.check.Report": tg.check.Report, "tg.Function": tg.Function}
SKIP_DIRS = {".git", ".venv", "build", "dist", "out", "__pycache__", ".ipynb_checkpoints", ".pytest_cache",
             ".ruff_cache", ".hypothesis", ".mypy_cache"}


def public_names() -> set[str]:
    """The qualified names docs/api.md must document."""
    names = {f"tg.{n}" for n in tg.__all__} | {f"nn.{n}" for n in nn.__all__} | {f"F.{n}" for n in F.__all__}
    for mod in (tg.check, tg.analytic, tg.optim, tg.viz):
        names |= {f"tg.{mod.__name__.split('.')[-1]}.{n}" for n, o in vars(mod).items()
                  if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o))
                  and o.__module__ == mod.__name__}
    names |= {f"Tensor.{n}" for n in vars(tg.Tensor) if not n.startswith("_")}
    for prefix, cls in CLASSES.items():
        names |= {f"{prefix}.{n}" for n, o in vars(cls).items() if not n.startswith("_")
                  and (inspect.isfunction(o) or isinstance(o, (property, classmethod, staticmethod)))}
    return names


def documented(text: str) -> dict[str, str]:
    """The convention of docs/api.md: a list item opens with one or more code spans (separated by
    ", ") naming an entry, qualified from tg., nn., F. or Tensor., with its signature. Returns
    {qualified name: the span}."""
    entries = {}
    for line in text.splitlines():
        head = re.match(r"- ((?:`[^`]+`)(?:, `[^`]+`)*)(?::|$)", line)
        if not head:
            continue
        for span in re.findall(r"`([^`]+)`", head.group(1)):
            m = re.match(r"((?:tg|nn|F|Tensor)(?:\.\w+)+)(\(.*\))?$", span)
            if m:
                entries[m.group(1)] = span
    return entries


def resolve(name: str):
    root, *rest = name.split(".")
    obj = ROOTS[root]
    for part in rest:
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    return obj


def parameter_names(span: str) -> list[str]:
    """`f(a, b=(1, 2), *c, **d)` -> ["a", "b", "c", "d"] (top-level commas only)."""
    inner, depth, parts, cur = span[span.index("(") + 1:-1], 0, [], ""
    for ch in inner:
        depth += ch in "([{<"
        depth -= ch in ")]}>"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.split("=")[0].strip().lstrip("*") for p in parts if p.strip()]


def test_every_public_name_is_documented():
    missing = sorted(public_names() - set(documented(API.read_text())))
    assert not missing, f"public names missing from docs/api.md: {missing}"


def test_every_documented_name_exists_with_the_codes_parameters():
    entries = documented(API.read_text())
    assert len(entries) > 150, "docs/api.md's entries were not found: has the list-item convention changed?"
    problems = []
    for name, span in entries.items():
        try:
            obj = resolve(name)
        except AttributeError:
            problems.append(f"{name}: no such name in the package")
            continue
        if "(" not in span:
            continue
        fn = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
        try:
            want = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
        except (TypeError, ValueError):
            problems.append(f"{name}: documented with a signature, but is not callable")
            continue
        if parameter_names(span) != want:
            problems.append(f"{name}: documented {parameter_names(span)}, the code has {want}")
    assert not problems, "docs/api.md disagrees with the code:\n" + "\n".join(problems)


def test_the_tests_the_course_notes_cite_exist():
    cited = re.findall(r"tests/(test_\w+\.py)::(\w+)", (ROOT / "docs" / "course.md").read_text())
    assert len(cited) > 20
    missing = [f"{f}::{t}" for f, t in cited
               if not (ROOT / "tests" / f).exists()
               or not re.search(rf"^def {t}\(", (ROOT / "tests" / f).read_text(), re.M)]
    assert not missing, f"docs/course.md cites tests that do not exist: {missing}"


def repository_files(*suffixes: str) -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).parts
        if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in rel) or not path.is_file():
            continue
        if path.suffix in suffixes:
            found.append(path)
    return found


def test_nothing_in_the_repository_points_outside_it():
    outside = re.compile(r"SEED\.md|\.\./shared/")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in repository_files(".py", ".md", ".ipynb", ".html", ".toml", ".sh", ".txt", ".cfg")
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(md):
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<img src=\"([^\"]+)\"", text)
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (md.parent / target).resolve() if target else md
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with that anchor in {path.name}")
    assert not broken, f"{md.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)
