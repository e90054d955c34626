"""`tinygrad-bn demo | check | train` (also `python -m tinygrad_bn ...`): argument parsing; what
the commands print is computed in report.py (demo, check) and training.py (train)."""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

from tinygrad_bn import report
from tinygrad_bn._missing import DotNotFoundError, MissingExtraError, require_dot


def _integer(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low (the message names the flag: argparse adds it)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value
    return parse


def _number(low: float, high: float, low_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in (low, high] (or [low, high] with low_open=False)."""
    interval = f"{'(' if low_open else '['}{low:g}, {'inf)' if math.isinf(high) else f'{high:g}]'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (low < value if low_open else low <= value) and value <= high):
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text}")
        return value
    return parse


SEED = _integer(0)  # numpy's seeds are integers >= 0


def check(args: argparse.Namespace) -> int:
    """Autograd against the hand-derived formulas over the grid; exit status 1 if a case fails."""
    return 1 if report.check(args.seed, args.quick, args.audit) else 0


def demo(args: argparse.Namespace) -> int:
    """The main job: the gradient report and the graphs. Part 1, autograd against the hand-derived
    formulas for batch norm, softmax cross-entropy and friends (`check --audit`); part 2, against
    finite differences on a small tanh network, first and second order; part 3, the gallery of
    rendered graphs (SVG, PNG, index.html) in --out."""
    print("== 1. autograd against the hand-derived formulas (tinygrad-bn check --quick --audit) ==\n")
    status = 1 if report.check(args.seed, quick=True, audit=True) else 0
    print("\n== 2. autograd against finite differences, first and second order ==\n")
    status = max(status, 0 if report.finite_difference_report(args.seed) else 1)
    if args.out:
        from tinygrad_bn.gallery import render_gallery
        try:
            require_dot("drawing the graphs")  # before anything is written: no half-made folder
            files = render_gallery(args.out, seed=args.seed)
        except DotNotFoundError as e:
            print(f"\ntinygrad-bn demo: the report above is complete; {e}\n"
                  "Then run `tinygrad-bn demo` again, or `tinygrad-bn demo --out ''` to skip the graphs.",
                  file=sys.stderr)
            return max(status, 1)
        except OSError as e:
            print(f"\ntinygrad-bn demo: cannot write the graphs into {args.out!r}: {e}", file=sys.stderr)
            return max(status, 1)
        index = next((f for f in files if f.name == "index.html"), files[-1])
        print(f"\n== 3. graphs: {len(files)} files rendered into {args.out}/ (open {index}) ==")
    return status


def train(args: argparse.Namespace) -> int:
    """Example 2 with defaults: a deep MLP on the digits with and without batch norm, several
    learning rates, plain SGD; prints the epochs each needs to reach the target test accuracy."""
    from tinygrad_bn.data import Split, load_digits, standardize
    from tinygrad_bn.training import bn_speedup, speedup_table

    try:
        d = load_digits(seed=args.seed)
    except MissingExtraError as e:
        print(f"tinygrad-bn train: {e}", file=sys.stderr)
        return 1
    x_train, x_test = standardize(d.x_train, d.x_test)
    print(f"digits: {len(x_train)} train / {len(x_test)} test; MLP 64 -> {args.depth} x {args.width} -> 10, "
          f"SGD, batch 64, {args.epochs} epochs")
    results = bn_speedup(Split(x_train, d.y_train, x_test, d.y_test), args.lr, args.depth, args.width, args.epochs,
                         seed=args.seed, show_progress=not args.no_progress)
    print(speedup_table(results, args.target))
    return 0


def main(argv: list[str] | None = None) -> int:
    from tinygrad_bn import __version__
    parser = argparse.ArgumentParser(prog="tinygrad-bn", description="tinygrad_bn: exact autodiff on NumPy")
    parser.add_argument("--version", action="version", version=f"tinygrad-bn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the gradient report and the rendered graphs")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default="out/gallery", help="folder for the rendered graphs ('' to skip them)")
    p.set_defaults(run=demo)
    p = sub.add_parser("check", help="autograd against the hand-derived formulas over a grid of cases")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--quick", action="store_true", help="skip the largest batch")
    p.add_argument("--audit", action="store_true",
                   help="add the node-by-node audits of hand derivations (batch norm, layer norm, softmax-CE, ...)")
    p.set_defaults(run=check)
    p = sub.add_parser("train", help="batch norm speed-up on the digits (example 2), as a summary table")
    p.add_argument("--epochs", type=_integer(1), default=15)
    p.add_argument("--lr", type=_number(0, math.inf), nargs="+", default=[0.01, 0.03, 0.1, 0.3],
                   help="learning rates (> 0), one run each")
    p.add_argument("--depth", type=_integer(1), default=6, help="hidden layers (>= 1)")
    p.add_argument("--width", type=_integer(1), default=64, help="units per hidden layer (>= 1)")
    p.add_argument("--target", type=_number(0, 1), default=0.9, help="test accuracy to reach, in (0, 1]")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=train)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"\ntinygrad-bn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (tinygrad-bn check | head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush stays quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
