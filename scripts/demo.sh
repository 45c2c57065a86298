#!/usr/bin/env bash
# The main job on its built-in default (sets up .venv on first use). Extra arguments go to `hamgan demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
hamgan demo "$@"
