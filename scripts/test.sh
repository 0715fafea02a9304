#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then lints and runs the whole test suite in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# One worker per core. At -n 4 on the 2-core CI machine a few docker tests per run failed: files uploaded
# to a running container went missing, as when dockerd, overloaded, unmounts an in-use volume around an
# archive call (moby/moby#37834; the sandboxes' writable areas are tmpfs volumes). Not yet confirmed.
exec .venv/bin/python -m pytest -n "$(nproc)" "$@"
