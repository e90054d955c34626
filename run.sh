#!/usr/bin/env bash
# The one entry point on a fresh machine: sets up, then runs a job.
#   bash run.sh demo [args]   the main job: gradient report (and, with the renderer, the graphs)
#   bash run.sh test [args]   the test suite (pytest) and the linter (ruff)
#   bash run.sh bench [args]  the benchmarks
# Set-up: Graphviz's `dot` (and, for the tests, Chromium) via apt-get when missing, a virtualenv in
# .venv with the package installed editable with its test and examples extras. Re-running skips what
# is already there.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-demo}"
shift || true

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
updated=""
apt_install() {  # apt_install PACKAGE: quietly, updating the package lists once
  [ -n "$updated" ] || { $sudo apt-get update -qq && updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}
if ! command -v dot >/dev/null 2>&1; then
  echo "run.sh: installing Graphviz (the dot program) with apt-get" >&2
  apt_install graphviz
fi
# the tests open the interactive graph page in a headless browser; without one they skip
if [ "$job" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "run.sh: installing Chromium (for the browser tests of the interactive page) with apt-get" >&2
  apt_install chromium || echo "run.sh: could not install chromium; the browser tests will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q -e ".[test,examples]"
  touch "$stamp"
fi

case "$job" in
  demo)  exec .venv/bin/tinygrad-bn demo "$@" ;;
  test)  .venv/bin/python -m pytest "$@"; exec .venv/bin/ruff check . ;;
  bench) exec .venv/bin/python benchmarks/run.py "$@" ;;
  *)     echo "usage: bash run.sh demo|test|bench [args]" >&2; exit 2 ;;
esac
