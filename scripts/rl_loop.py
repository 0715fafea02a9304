"""The RL loop closes: `scripts/sft_loop.py`'s SFT checkpoint -> `orchard-train grpo` on the suite's train
split -> `orchard-bench run` of base, SFT and SFT+GRPO on the test split, with pass@1 and 95% CIs.

    .venv/bin/python scripts/rl_loop.py --out runs/rl-loop --readme       # the README numbers (CPU: ~1 h)
    .venv/bin/python scripts/rl_loop.py --out /tmp/r --smoke              # a few minutes: the test's run

Every stage is the command line a user would type, so this is also the check that what `orchard-train grpo`
writes, `orchard-bench` and the `hf` agent load as is. The SFT stage reuses `sft_loop.py` (and its
checkpoint, when `--out` already holds one). `--readme` rewrites the table between the `rl-loop` markers.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def sh(*command: str) -> str:
    print("+", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"rl_loop: `{' '.join(command)}` failed with exit code {done.returncode}")
    return done.stdout


def sft(args: argparse.Namespace) -> Path:
    """The SFT checkpoint, made (or reused) by sft_loop.py in `--out/sft`."""
    out = args.out / "sft"
    command = [sys.executable, str(ROOT / "scripts" / "sft_loop.py"), "--out", str(out)]
    command += ["--model", args.model]
    command += ["--suite", args.suite, "--max-new-tokens", str(args.max_new_tokens), "--jobs", str(args.jobs)]
    command += ["--max-steps", str(args.sft_steps), "--lr", str(args.sft_lr)]
    if args.smoke:
        command += ["--train-limit", "2", "--test-limit", "1", "--batch-size", "1"]
    else:
        command += ["--test-per-category", "1"]
    if not (out / "checkpoint" / "model.safetensors").exists():
        sh(*command)
    return out / "checkpoint"


def grpo(args: argparse.Namespace, start: Path) -> tuple[Path, list[dict]]:
    """The GRPO checkpoint trained from `start`, and its metrics rows."""
    out = args.out / "grpo"
    command = [str(BIN / "orchard-train"), "grpo", "--model", str(start), "--out", str(out)]
    command += ["--suite", args.suite, "--split", "train", "--steps", str(args.steps), "--lr", str(args.lr)]
    command += ["--groups", str(args.groups), "--group-size", str(args.group_size), "--jobs", str(args.jobs)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--max-turns", str(args.max_turns)]
    command += ["--loss", args.loss, "--no-progress", "--save-total-limit", "0"]
    command += ["--max-group-size", str(args.max_group_size), "--max-rounds", str(args.max_rounds)]
    if (out / "model.safetensors").exists():
        print(f"reusing the checkpoint in {out}")
    else:
        if (out / "state").exists():
            command.append("--resume")  # an interrupted run continues where it stopped
        sh(*command)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return out, rows


def bench(args: argparse.Namespace, name: str, model: str) -> dict:
    """Pass@1, mean reward and their 95% CIs of `model` on the test split, from orchard-bench's own store."""
    from orchard_envs.leaderboard.stats import summarize
    from orchard_envs.leaderboard.store import ResultsStore

    out = args.out / name
    command = [str(BIN / "orchard-bench"), "run", "--suite", args.suite, "--split", "test"]
    command += ["--agent", f"hf:{model}", "--out", str(out), "-j", str(args.jobs)]
    command += ["--option", f"max_new_tokens={args.max_new_tokens}"]
    command += ["--harness-option", f"max_turns={args.max_turns}"]
    if args.smoke:
        command += ["--limit", "1"]
    sh(*command)
    store = ResultsStore.open(out)
    try:
        summary = summarize(store.rows(), k=1)
    finally:
        store.close()
    return {
        "tasks": summary.tasks,
        "pass_at_1": summary.pass_at_k,
        "pass_at_1_ci": list(summary.pass_at_k_ci),
        "mean_reward": summary.mean_reward,
        "mean_reward_ci": list(summary.mean_reward_ci),
        "valid_calls": summary.valid_call_rate,
    }


def table(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"`{s['model']}` on `{s['suite']}` (test split, {results['base']['tasks']} tasks, one trial each, "
        f"95% bootstrap CIs over tasks): the base model, after `orchard-train sft` ({s['sft_steps']} steps "
        f"on oracle episodes), and after `orchard-train grpo` from that checkpoint ({s['steps']} steps of "
        f"{s['groups']} groups, `--loss {s['loss']}`, {results['grpo']['rollouts']} rollouts on the train "
        f"split; `scripts/rl_loop.py`, {s['device']}):",
        "",
        "| model | pass@1 | 95% CI | mean reward | 95% CI | episodes with a valid tool call |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("base", "base"), ("sft", "SFT"), ("rl", "SFT + GRPO")):
        row = results[name]
        low, high = row["pass_at_1_ci"]
        rlow, rhigh = row["mean_reward_ci"]
        calls = "n/a" if row["valid_calls"] is None else f"{row['valid_calls']:.1%}"
        lines.append(
            f"| {label} | {row['pass_at_1']:.1%} | {low:.1%}-{high:.1%} | {row['mean_reward']:.3f} | "
            f"{rlow:.3f}-{rhigh:.3f} | {calls} |"
        )
    return "\n".join(lines)


def write_readme(markdown: str) -> None:
    readme = ROOT / "README.md"
    begin, end = "<!-- rl-loop:begin -->", "<!-- rl-loop:end -->"
    text = readme.read_text()
    if begin not in text:
        sys.exit("rl_loop: README.md has no <!-- rl-loop:begin --> marker")
    block = f"{begin}\n{markdown}\n{end}"
    readme.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suite", default="claw-mini")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--sft-steps", type=int, default=10)
    parser.add_argument("--sft-lr", type=float, default=2e-4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-group-size", type=int, default=6, help="Balanced Adaptive Rollout's largest")
    parser.add_argument("--max-rounds", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-6)
    parser.add_argument("--loss", default="dapo")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the test's run")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args()
    args.out = args.out.resolve()
    if args.smoke:
        args.sft_steps, args.steps, args.groups, args.group_size = 1, 1, 1, 2
        args.max_group_size, args.max_rounds = 2, 1
        args.max_new_tokens, args.max_turns, args.jobs = 16, 2, 2

    checkpoint = sft(args)
    trained, rows = grpo(args, checkpoint)
    import torch

    device = "GPU" if torch.cuda.is_available() else "CPU"
    results = {
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "device": device},
        "grpo": {
            "rollouts": sum(row["rollouts"] for row in rows),
            "reward_curve": [row["reward_mean"] for row in rows],
        },
        "base": bench(args, "base-test", args.model),
        "sft": bench(args, "sft-test", str(checkpoint)),
        "rl": bench(args, "rl-test", str(trained)),
    }
    (args.out / "rl_loop.json").write_text(json.dumps(results, indent=2))
    markdown = table(results)
    print(markdown)
    if args.readme:  # the numbers the README quotes are kept with the other benchmark results
        (ROOT / "benchmarks" / "results" / "rl_loop.json").write_text(json.dumps(results, indent=2))
        write_readme(markdown)
        plot(rows)


def plot(rows: list[dict]) -> None:
    """The GRPO run's reward and pass-rate curves, as an SVG for the docs."""
    from orchard_envs.leaderboard.charts import curves

    series = [
        ("mean rollout reward", [r["reward_mean"] for r in rows]),
        ("pass rate", [r["pass_rate"] for r in rows]),
    ]
    chart = curves("orchard-train grpo on claw-mini (train split)", "step", "share", series)
    (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
    (ROOT / "docs" / "images" / "rl_loop_reward.svg").write_text(chart)


if __name__ == "__main__":
    main()
