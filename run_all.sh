#!/usr/bin/env bash
# ./run_all.sh           set up .venv, run the embedded default, write leaderboards/
# ./run_all.sh test      set up .venv, run the test suite
# ./run_all.sh <cmd> ... any `python -m benchmark` subcommand (train, perf, ls, validate, report ...)
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing pinned dependencies into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install --quiet -e .
  touch "$stamp"
fi

# Nothing is ever fetched from a model hub: weights come from the repo or local folders.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

cmd="${1:-run}"
[ $# -gt 0 ] && shift
case "$cmd" in
  test) exec "$VENV/bin/python" -m pytest -q "$@" ;;
  run)  exec "$VENV/bin/python" -m benchmark run --config configs/embedded_default.yaml "$@" ;;
  *)    exec "$VENV/bin/python" -m benchmark "$cmd" "$@" ;;
esac
