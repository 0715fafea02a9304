#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the main job on the embedded defaults: the sandbox
# smoke checks, then orchard-bench runs on the test splits (the oracle on swe-mini, oracle and noop on
# claw-mini with 3 trials each, the local default model SmolLM2-135M-Instruct on 4 claw-mini tasks,
# recorded token for token), a short SFT of that model on oracle episodes of the train split scored on the
# same 4 tasks, the leaderboard of those runs and its HTML report.
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
# The loop, shortened for a CPU: SFT on the train split's oracle episodes, then the same 4 test tasks.
bench run --suite claw-mini --split train --agent oracle -j 2 --out runs/demo-train/oracle-claw-mini
if [ ! -e runs/ckpt/smollm2-claw-sft/model.safetensors ]; then  # --resume: an interrupted run goes on
  .venv/bin/orchard-train sft --episodes runs/demo-train/oracle-claw-mini --out runs/ckpt/smollm2-claw-sft \
    --max-steps 4 --batch-size 4 --lr 2e-4 --seq-len 2048 --resume
fi
bench run --suite claw-mini --split test --limit 4 --agent hf:runs/ckpt/smollm2-claw-sft \
  --option max_new_tokens=96 --out runs/demo/smollm2-sft-claw-mini
bench leaderboard runs/demo
bench report runs/demo --out runs/demo/leaderboard.html
