#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the main job on the embedded defaults:
# the sandbox smoke checks, the oracle agent through orchard/SWE-v0 on swe-mini's test split, the Claw
# check (oracle/noop/wrong plan on claw-mini's test split), then one episode of the default model
# (SmolLM2-135M-Instruct, local, CPU) recorded token for token.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/orchard-env smoke
.venv/bin/orchard-tasks swe check --suite swe-mini --split test "$@"
.venv/bin/orchard-tasks claw check --suite claw-mini --split test
mkdir -p runs
exec .venv/bin/orchard-tasks swe run --agent hf --harness react --suite swe-mini --split test --limit 1 \
  --max-steps 3 --option max_new_tokens=96 --out runs/demo-hf.jsonl
