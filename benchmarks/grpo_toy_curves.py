"""Reward curves of the three GRPO losses on the toy colour task (tests/rl_toy.py), as JSON and an SVG chart.

    .venv/bin/python benchmarks/grpo_toy_curves.py    # ~1 min on 2 cores

The same settings as tests/test_grpo_train.py (16 steps, 4 groups of 8, lr 1e-2, seed 0), run for longer,
so the docs show what the test checks: every loss lifts the mean rollout reward from the random policy's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import rl_toy

    from orchard_envs.leaderboard.charts import curves
    from orchard_envs.trainers.grpo import train
    from orchard_envs.trainers.grpo_config import GRPOConfig
    from orchard_envs.trainers.metrics import read_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "grpo_toy_curves.json")
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "images" / "grpo_toy_curves.svg")
    args = parser.parse_args()
    rl_toy.register()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        model = rl_toy.build_tiny_model(Path(scratch) / "model")
        for loss in ("grpo", "dr_grpo", "dapo"):
            config = GRPOConfig(
                out=Path(scratch) / loss, model=str(model), env=rl_toy.ENV_ID, task_ids=rl_toy.COLOURS,
                harness="first-word", steps=args.steps, groups=4, group_size=8, balanced=False, jobs=1,
                max_new_tokens=3, max_turns=1, lr=1e-2, loss=loss, progress=False, save_steps=1000,
                save_total_limit=0, device="cpu",
            )  # fmt: skip
            train(config)
            results[loss] = [row["reward_mean"] for row in read_metrics(config.out)]
            print(loss, " ".join(f"{r:.2f}" for r in results[loss]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"steps": args.steps, "reward_mean": results}, indent=2))
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    chart = curves("GRPO on the toy colour task", "step", "mean rollout reward", list(results.items()))
    args.svg.write_text(chart)


if __name__ == "__main__":
    main()
