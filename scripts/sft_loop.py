"""The loop closes: oracle episodes on a suite's train split -> `orchard-train sft` -> `orchard-bench run` on
its test split, for the base model and the fine-tuned one, side by side.

    .venv/bin/python scripts/sft_loop.py --out runs/sft-loop --max-steps 10 --lr 2e-4 --test-per-category 2
                                                          # the README numbers (CPU: ~1 h)
    .venv/bin/python scripts/sft_loop.py --out /tmp/l --train-limit 3 --test-limit 1 --max-steps 2  # smoke

Every stage is the real command line a user would type (no shortcut through internal APIs), so this is also
the end-to-end check that what the trainer writes, `orchard-bench` and the `hf` agent load as is.
`--readme` rewrites the results table between the `sft-loop` markers of README.md.
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
        sys.exit(f"sft_loop: `{' '.join(command)}` failed with exit code {done.returncode}")
    return done.stdout


def spread(suite: str, split: str, per_category: int) -> list[str]:
    """The first tasks of every category, so a short test run still covers every kind of task."""
    from orchard_envs.leaderboard.suites import load

    chosen: dict[str, list[str]] = {}
    for task in load(suite, split).tasks:
        picked = chosen.setdefault(task.category, [])
        if len(picked) < per_category:
            picked.append(task.task_id)
    return [task_id for picked in chosen.values() for task_id in picked]


def bench(args: argparse.Namespace, name: str, agent: str, split: str, limit: int | None) -> Path:
    out = args.out / name
    command = [str(BIN / "orchard-bench"), "run", "--suite", args.suite, "--split", split, "--agent", agent]
    command += ["--out", str(out), "-j", str(args.jobs)]
    if limit:
        command += ["--limit", str(limit)]
    if split == "test" and args.test_per_category:
        command += ["--tasks", ",".join(spread(args.suite, split, args.test_per_category))]
    if agent.startswith("hf"):
        command += ["--option", f"max_new_tokens={args.max_new_tokens}"]
    sh(*command)
    return out / "episodes.jsonl"


def score(episodes: Path) -> dict[str, float | int]:
    rows = [json.loads(line) for line in episodes.read_text().splitlines() if line.strip()]
    count = len(rows) or 1
    called = sum(
        any(m.get("tool_calls") for m in row["messages"] if m["role"] == "assistant") for row in rows
    )
    return {
        "episodes": len(rows),
        "mean_reward": round(sum(row["reward"] for row in rows) / count, 4),
        "resolved": round(sum(bool(row["resolved"]) for row in rows) / count, 4),
        "valid_tool_call_episodes": round(called / count, 4),
        "format_error_episodes": round(sum(row["status"] == "format_errors" for row in rows) / count, 4),
    }


def table(results: dict) -> str:
    settings = results["settings"]
    lines = [
        f"`{settings['model']}` on `{settings['suite']}` (test split, {results['base']['episodes']} tasks), "
        f"before and after `orchard-train sft` on {results['train_episodes']} oracle episodes of the train "
        f"split ({results['sft']['trained_tokens']:,} trained tokens, {results['sft']['steps']} steps; "
        f"`scripts/sft_loop.py`, {settings['device']}):",
        "",
        "| model | mean reward | resolved | episodes with a valid tool call | format-error episodes |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("base", "base"), ("after", "after SFT")):
        row = results[name]
        lines.append(
            f"| {label} | {row['mean_reward']:.3f} | {row['resolved']:.1%} | "
            f"{row['valid_tool_call_episodes']:.1%} | {row['format_error_episodes']:.1%} |"
        )
    return "\n".join(lines)


def write_readme(markdown: str) -> None:
    readme = ROOT / "README.md"
    begin, end = "<!-- sft-loop:begin -->", "<!-- sft-loop:end -->"
    text = readme.read_text()
    if begin not in text:
        sys.exit("sft_loop: README.md has no <!-- sft-loop:begin --> marker")
    block = f"{begin}\n{markdown}\n{end}"
    readme.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suite", default="claw-mini")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--train-limit", type=int, help="train tasks (default: the whole split)")
    parser.add_argument("--test-limit", type=int, help="test tasks (default: the whole split)")
    parser.add_argument("--test-per-category", type=int, help="only the first N test tasks of each category")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args()
    args.out = args.out.resolve()

    train_episodes = bench(args, "oracle-train", "oracle", "train", args.train_limit)
    checkpoint = args.out / "checkpoint"
    command = [str(BIN / "orchard-train"), "sft", "--episodes", str(train_episodes), "--out", str(checkpoint)]
    command += ["--model", args.model, "--lr", str(args.lr), "--seq-len", str(args.seq_len), "--no-progress"]
    command += ["--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
    command += ["--warmup-ratio", str(args.warmup_ratio)]
    if args.max_steps:
        command += ["--max-steps", str(args.max_steps)]
    if checkpoint.exists() and not (checkpoint / "model.safetensors").exists():
        command.append("--resume")  # an interrupted run continues from its last state (or starts over)
    if (checkpoint / "model.safetensors").exists():
        print(f"reusing the checkpoint in {checkpoint}")
        report = json.loads((checkpoint / "orchard_train.json").read_text())["data"]
        report["steps"] = sum(1 for _ in (checkpoint / "metrics.jsonl").open())
    else:
        report = json.loads(sh(*command).strip().splitlines()[-1])

    base = score(bench(args, "base-test", f"hf:{args.model}", "test", args.test_limit))
    after = score(bench(args, "sft-test", f"hf:{checkpoint}", "test", args.test_limit))
    import torch

    results = {
        "settings": {
            **{k: str(v) for k, v in vars(args).items()},
            "device": "GPU" if torch.cuda.is_available() else "CPU",
        },
        "train_episodes": score(train_episodes)["episodes"],
        "sft": {"trained_tokens": report["trained_tokens"], "steps": report["steps"]},
        "base": base,
        "after": after,
    }
    (args.out / "sft_loop.json").write_text(json.dumps(results, indent=2))
    markdown = table(results)
    print(markdown)
    if args.readme:
        write_readme(markdown)


if __name__ == "__main__":
    main()
