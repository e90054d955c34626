"""What to say when a piece the user may not have is missing: Graphviz's `dot` program (the graphs)
and the optional extras (scikit-learn for the digits, matplotlib for the examples' figures)."""
from __future__ import annotations

import shutil

import graphviz

DOT_INSTALL = ("Install it with your system's package manager, one of:\n"
               "  sudo apt-get install graphviz    (Debian, Ubuntu)\n"
               "  brew install graphviz            (macOS)\n"
               "  conda install graphviz           (conda)\n"
               "(`pip install graphviz` installs only the Python wrapper, not the dot program.)")


class DotNotFoundError(graphviz.ExecutableNotFound):
    """Graphviz's `dot` program is not on PATH (a graphviz.ExecutableNotFound, with the install command)."""

    def __init__(self, what: str = "rendering a graph"):
        RuntimeError.__init__(self, f"{what} needs Graphviz's `dot` program, which is not installed (not found "
                                    f"on PATH).\n{DOT_INSTALL}")


def require_dot(what: str = "rendering a graph") -> None:
    """Raise DotNotFoundError unless `dot` is on PATH."""
    if shutil.which("dot") is None:
        raise DotNotFoundError(what)


def extra_hint(extra: str = "examples") -> str:
    """How to install an optional extra, for a pip user and for a checkout of the repository."""
    return (f'install the "{extra}" extra: pip install "tinygrad-bn[{extra}]"\n'
            f'(in a checkout of the repository: pip install -e ".[{extra}]")')


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    def __init__(self, what: str, module: str, extra: str = "examples"):
        super().__init__(f"{what} needs {module}, which is not installed: {extra_hint(extra)}", name=module)
