"""What every example shares: argument parsing, the output folder, the digits data, a figure saver."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_bn as tg
from tinygrad_bn._missing import DOT_INSTALL, extra_hint
from tinygrad_bn.data import Split, load_digits, standardize
from tinygrad_bn.training import progress, spread

SEEDS = (0, 1, 2, 3, 4)  # a training run is chaotic: one seed's number is an anecdote, so claims are over these


EXTRAS = ("sklearn", "matplotlib")  # what most examples need: the "examples" extra


def missing(needs: Sequence[str]) -> list[str]:
    """Which of `needs` (module names, or "dot" for Graphviz's program) this machine lacks."""
    def absent(name: str) -> bool:
        if name == "dot":
            return shutil.which("dot") is None
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True
    return [n for n in needs if absent(n)]


def require(needs: Sequence[str]) -> None:
    """Stop with a message (exit status 1, no traceback) saying what to install when any of `needs`
    is missing: before the example trains for minutes and then fails."""
    lacking = missing(needs)
    if not lacking:
        return
    names = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "dot": "Graphviz's dot program"}
    lines = [f"this example needs {' and '.join(names.get(n, n) for n in lacking)}, not installed here."]
    if any(n != "dot" for n in lacking):
        hint = extra_hint("examples")
        lines.append(hint[:1].upper() + hint[1:])
    if "dot" in lacking:
        lines.append(f"Graphviz's dot renders the graphs. {DOT_INSTALL}")
    raise SystemExit("\n".join(lines))


def parse_args(doc: str, several_seeds: bool = True, needs: Sequence[str] = EXTRAS,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """--out, --quick, --fused (see computing) and --seeds (default SEEDS; the first two with --quick),
    or --seed for a deterministic example; `argv` is main's (None: the command line), so a test can run
    main in-process and compare the runs it returns. Stops with what to install when a piece of `needs`
    is missing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder for the figures")
    parser.add_argument("--quick", action="store_true", help="a shorter run (as the tests use)")
    parser.add_argument("--fused", nargs="?", type=int, const=0, metavar="MIN_ELEMENTS",
                        help="compute under tg.fused(min_elements=MIN_ELEMENTS) (ops run lazily, in fused kernels; "
                        "these arrays are small, so only --fused 1 runs kernels): the same numbers, to float rounding")
    if several_seeds:
        parser.add_argument("--seeds", type=int, nargs="+", help=f"one run per seed (default {seeds_label(SEEDS)}); "
                            "each claim is printed as the median (min-max) over them")
    else:
        parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    require(needs)
    if several_seeds and args.seeds is None:
        args.seeds = list(SEEDS[:2] if args.quick else SEEDS)
    return args


def computing(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """What main computes its runs in: tg.fused() with --fused (ops recorded as eagerly, run lazily in
    fused kernels: the same numbers to float rounding), else eager mode. Printing and plotting come
    after, on the computed runs."""
    if args.fused is None:
        return contextlib.nullcontext()
    return tg.fused(min_elements=args.fused) if args.fused else tg.fused()  # (--fused alone: the default)


def over_seeds(run: Callable[..., Any], seeds: Sequence[int], **kwargs: Any) -> list[Any]:
    """run(seed=s, **kwargs) for each seed, with one progress bar over the seeds. One BLAS thread: the
    matrices are small, the results the same to the bit, and a second thread on a busy machine only waits
    (4x slower on 2 shared cores)."""
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:  # then the BLAS keeps its threads: the same results, maybe slower
        def threadpool_limits(limits: int) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()
    with threadpool_limits(1):
        return [run(seed=s, show_progress=False, **kwargs) for s in progress(seeds, len(seeds), f"{len(seeds)} seeds")]


def seeds_label(seeds: Sequence[int]) -> str:
    """'seeds 0-4' for a contiguous run of seeds, else 'seeds 0, 3, 7'."""
    s = sorted(seeds)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"seeds {s[0]}-{s[-1]}"
    return f"seed{'s' * (len(s) > 1)} {', '.join(map(str, s))}"


def header(seeds: Sequence[int]) -> str:
    """What the numbers below are: 'over seeds 0-4: median (min-max)', or 'seed 3'."""
    return f"over {seeds_label(seeds)}: median (min-max)" if len(seeds) > 1 else seeds_label(seeds)


def report(claims: dict[str, list[float]], seeds: Sequence[int] | None, fmt: str = ".3g") -> None:
    """Print each claimed number as the median (min-max) over the seeds (given seeds, say which)."""
    if seeds is not None:
        print(header(seeds))
    width = max(map(len, claims))
    for name, values in claims.items():
        print(f"  {name:<{width}}  {spread(values, fmt)}")


def band(ax, x: Sequence[float] | None, curves: Sequence[Sequence[float]], label: str, **style: Any) -> None:
    """The median curve over seeds with a shaded min-max band (shorter curves, ended by a
    divergence, are padded with nan)."""
    a = np.full((len(curves), max(map(len, curves))), np.nan)
    for row, c in zip(a, curves):
        row[:len(c)] = c
    x = np.arange(1, a.shape[1] + 1) if x is None else np.asarray(x)
    line, = ax.plot(x, np.nanmedian(a, axis=0), label=label, **style)
    ax.fill_between(x, np.nanmin(a, axis=0), np.nanmax(a, axis=0), color=line.get_color(), alpha=0.2, lw=0)


def digits(normalize: bool = True, dtype: type = np.float32) -> Split:
    """The digits split; with normalize, each pixel standardized with the training statistics."""
    d = load_digits(dtype=dtype)
    if not normalize:
        return d
    x_train, x_test = standardize(d.x_train, d.x_test)
    return Split(x_train, d.y_train, x_test, d.y_test)


def save(fig, out: str, name: str) -> Path:
    """Save a matplotlib figure as out/name.png and say where."""
    path = Path(out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    return path


def pyplot():
    """matplotlib's pyplot on a file-only backend (no screen needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
