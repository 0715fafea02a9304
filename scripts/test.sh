#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then lints and runs the whole test suite in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n 4 "$@"
