#!/usr/bin/env bash
# Creates .venv (once) and installs hamgan into it; re-installs only when the
# requirements or pyproject change. Sourced by the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HAMGAN_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.hamgan-installed"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing requirements (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # (grep drops the noise of this machine's local package mirrors)
  { "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" pytest &&
    "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"; } 2>&1 | { grep -v "is ignored: it is neither" || true; }
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
