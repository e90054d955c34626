#!/usr/bin/env bash
# The one entry point on a fresh machine: sets up, then runs a job.
#   bash run.sh demo [args]   the main job: gradient report (and, with the renderer, the graphs)
#   bash run.sh test [args]   the test suite (pytest) and the linter (ruff)
#   bash run.sh bench [args]  the benchmarks
# Set-up: Graphviz's `dot` via apt-get when missing, a virtualenv in .venv with the package
# installed editable with its test and examples extras. Re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-demo}"
shift || true

if ! command -v dot >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "run.sh: installing Graphviz (the dot program) with apt-get" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq graphviz >/dev/null
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
