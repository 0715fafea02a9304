"""Build the `web-mini` suite from the task families, deterministically from a seed.

`python -m orchard_envs.tasks.web.generate --out tasks/web/data/web-mini.jsonl` writes the bundled suite:
per family five train and three test tasks, each from its own generator seeded by (seed, family, split,
index), so adding a family or a task never changes the others.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from orchard_envs.tasks.web.families import FAMILIES
from orchard_envs.tasks.web.task import WebTask, dumps

PER_SPLIT = {"train": 5, "test": 3}


def generate_suite(seed: int = 0, per_split: dict[str, int] | None = None) -> list[WebTask]:
    """Every family's tasks in registry order, train before test."""
    counts = per_split or PER_SPLIT
    tasks = []
    for name, build in FAMILIES.items():
        for split, total in counts.items():
            for index in range(total):
                tasks.append(build(random.Random(f"web:{seed}:{name}:{split}:{index}"), split, index))
    return tasks


def write_jsonl(tasks: list[WebTask], path: Path) -> None:
    """One JSON line per task (UTF-8), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(dumps(task) + "\n" for task in tasks), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """The generator's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tasks = generate_suite(args.seed)
    write_jsonl(tasks, args.out)
    print(f"wrote {len(tasks)} tasks to {args.out}")


if __name__ == "__main__":
    main()
