"""Build a Claw suite from the task families, deterministically from a seed.

`python -m orchard_envs.tasks.claw.generate --out tasks/claw/data/claw-mini.jsonl --seed 0` writes the
bundled `claw-mini` suite: per family, two thirds train and one third test tasks.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from orchard_envs.tasks.claw.families import FAMILIES, get_family
from orchard_envs.tasks.claw.task import ClawTask, task_record

DEFAULT_PER_FAMILY = 18


def split_counts(total: int) -> dict[str, int]:
    """Two thirds train (rounded), the rest test; at least one of each when total >= 2."""
    train = max(1, round(total * 2 / 3)) if total >= 2 else total
    test = total - train
    if total >= 2 and test == 0:
        train, test = train - 1, 1
    return {"train": train, "test": test}


def generate_suite(seed: int = 0, per_family: dict[str, int] | int = DEFAULT_PER_FAMILY) -> list[ClawTask]:
    """Every family's tasks in registry order; each task has its own generator, seeded by
    (seed, family, split, index), so adding a family or task never changes the others."""
    counts = per_family if isinstance(per_family, dict) else dict.fromkeys(FAMILIES, per_family)
    tasks = []
    for name, total in counts.items():
        family = get_family(name)
        for split, n in split_counts(total).items():
            for index in range(n):
                rng = random.Random(f"claw:{seed}:{name}:{split}:{index}")
                tasks.append(family.build(rng, split, index))
    return tasks


def write_jsonl(tasks: list[ClawTask], path: Path) -> None:
    """Write the tasks one JSON line each (UTF-8, not escaped), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(task_record(task), ensure_ascii=False) for task in tasks]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """The generator's command line: write a suite for a seed to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-family", type=int, default=DEFAULT_PER_FAMILY, help="tasks per family")
    args = parser.parse_args(argv)
    tasks = generate_suite(args.seed, args.per_family)
    write_jsonl(tasks, args.out)
    print(f"wrote {len(tasks)} tasks to {args.out}")


if __name__ == "__main__":
    main()
