#!/usr/bin/env bash
# The whole test suite (sets up .venv on first use). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
python -m pytest -q "$@"
