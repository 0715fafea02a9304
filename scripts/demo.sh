#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the main job on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/orchard-env smoke "$@"
