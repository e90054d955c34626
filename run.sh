#!/usr/bin/env bash
# The one entry point on a fresh machine: sets up, then runs a job.
#   bash run.sh demo [args]   the main job: gradient report (and, with the renderer, the graphs)
#   bash run.sh test [args]   the test suite (pytest), the linter (ruff) and the type checker (mypy)
#   bash run.sh bench [args]  the benchmarks
# Set-up: Graphviz's `dot` (and, for the tests, Chromium) via apt-get when missing (without apt-get:
# what to install by hand, then stop; the browser tests skip without Chromium), a virtualenv in
# .venv with the package installed editable with its test, examples and fused (numba) extras.
# Re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-demo}"
shift || true

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
updated=""
have() { command -v "$1" >/dev/null 2>&1; }
can_apt() { have apt-get && { [ -z "$sudo" ] || have sudo; }; }  # apt-get, as root or through sudo
apt_install() {  # apt_install PACKAGE: quietly, updating the package lists once
  [ -n "$updated" ] || { $sudo apt-get update -qq && updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}
dot_by_hand() {  # dot_by_hand WHY: say what to install, then stop
  {
    echo "run.sh: Graphviz's dot program (it renders the graphs) is missing,"
    echo "and $1."
    echo "Install it by hand with one of these, then run this again:"
    echo "  sudo apt-get install graphviz    (Debian, Ubuntu)"
    echo "  brew install graphviz            (macOS)"
    echo "  sudo dnf install graphviz        (Fedora)"
    echo "  conda install graphviz           (conda)"
    echo "(pip install graphviz installs only the Python wrapper, not the dot program.)"
  } >&2
  exit 1
}
if ! have dot; then
  if can_apt; then
    echo "run.sh: installing Graphviz (the dot program) with apt-get" >&2
    apt_install graphviz || dot_by_hand "apt-get could not install it"
  else
    dot_by_hand "apt-get is not available to install it"
  fi
fi
# the tests open the interactive graph page in a headless browser; without one they skip
if [ "$job" = test ] && ! have chromium && ! have chromium-browser && ! have google-chrome; then
  if can_apt; then
    echo "run.sh: installing Chromium (for the browser tests of the interactive page) with apt-get" >&2
    apt_install chromium || echo "run.sh: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "run.sh: no Chromium, and no apt-get to install it: the browser tests of the interactive page" \
      "will be skipped (install chromium by hand to run them)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  if ! have python3 || ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "run.sh: Python 3.10 or newer is needed as python3; install it (python.org, or your package manager)" >&2
    exit 1
  fi
  python3 -m venv .venv || {
    echo "run.sh: python3 -m venv failed; on Debian or Ubuntu: sudo apt-get install python3-venv" >&2
    exit 1
  }
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q -e ".[test,examples,fused]"
  touch "$stamp"
fi

case "$job" in
  demo)  exec .venv/bin/tinygrad-bn demo "$@" ;;
  test)  .venv/bin/python -m pytest "$@"; .venv/bin/ruff check .; exec .venv/bin/python -m mypy ;;
  bench) exec .venv/bin/python benchmarks/run.py "$@" ;;
  *)     echo "usage: bash run.sh demo|test|bench [args]" >&2; exit 2 ;;
esac
