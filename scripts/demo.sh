#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the main job on the embedded defaults:
# the sandbox smoke checks, then the oracle agent through orchard/SWE-v0 on swe-mini's test split.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/orchard-env smoke
exec .venv/bin/orchard-tasks swe check --suite swe-mini --split test "$@"
