#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the main job on the embedded defaults: the sandbox
# smoke checks, then orchard-bench runs on the test splits (the oracle on swe-mini, oracle and noop on
# claw-mini with 3 trials each, the local default model SmolLM2-135M-Instruct on 4 claw-mini tasks,
# recorded token for token), the leaderboard of those runs and its HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/orchard-env smoke
# Re-running resumes: finished episodes are kept, only missing ones run.
bench() { .venv/bin/orchard-bench "$@"; }
bench run --suite swe-mini --split test --agent oracle -j 2 --out runs/demo/oracle-swe-mini
bench run --suite claw-mini --split test --agent oracle -k 3 -j 2 --out runs/demo/oracle-claw-mini
bench run --suite claw-mini --split test --agent noop -k 3 -j 2 --out runs/demo/noop-claw-mini
bench run --suite claw-mini --split test --limit 4 --agent hf --option max_new_tokens=96 \
  --out runs/demo/smollm2-claw-mini
bench leaderboard runs/demo
bench report runs/demo --out runs/demo/leaderboard.html
