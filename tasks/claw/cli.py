"""`orchard-tasks claw`: list, check and generate Claw suites."""

from __future__ import annotations

from pathlib import Path

import typer

from orchard_envs.cli_support import fail as cli_fail
from orchard_envs.errors import OrchardError

claw = typer.Typer(
    help="Claw suites: personal-assistant tool tasks over mock services.", no_args_is_help=True
)
SUITE = typer.Option("claw-mini", help="Bundled suite name, a .jsonl suite, or a folder of task.yaml files.")
SPLIT = typer.Option(None, help="Only this split (train or test).")


def fail(message: str) -> None:
    cli_fail("orchard-tasks", message)


@claw.command("list")
def list_tasks(suite: str = SUITE, split: str | None = SPLIT) -> None:
    """One line per task: id, split, category, tools."""
    from orchard_envs.tasks.claw.task import load_suite

    try:
        tasks = load_suite(suite, split)
    except OrchardError as exc:
        fail(str(exc))
    for task in tasks:
        typer.echo(f"{task.task_id}\t{task.split}\t{task.category}\t{','.join(task.tools)}")


@claw.command()
def check(
    suite: str = SUITE,
    split: str | None = SPLIT,
    harness: str = typer.Option("tool-calling", help="Harness the scripted agents speak through."),
    task: list[str] = typer.Option([], help="Only this task id (repeatable)."),
) -> None:
    """Every task must pass with its oracle and fail with `noop` and with its do-the-wrong-thing plan."""
    import gymnasium as gym

    from orchard_envs.agents import get_agent
    from orchard_envs.agents.claw_oracle import WrongAgent
    from orchard_envs.harnesses import get_harness
    from orchard_envs.runner import run_episode

    expected = {"oracle": True, "noop": False, "wrong": False}
    problems = checked = 0
    try:
        scaffold = get_harness(harness)
        agents = {"oracle": get_agent("oracle"), "noop": get_agent("noop"), "wrong": WrongAgent()}
        with gym.make("orchard/Claw-v0", suite=suite, split=split, task_ids=task or None) as env:
            for claw_task in env.unwrapped.tasks:
                verdicts = []
                for name, agent in agents.items():
                    meta = run_episode(env, scaffold, agent, task_id=claw_task.task_id).metadata
                    ok = meta.resolved is expected[name] and meta.status not in ("error", "infra_error")
                    problems += not ok
                    verdicts.append(f"{name}={meta.reward:.2f}{'' if ok else '!'}")
                checked += 1
                typer.echo(f"{claw_task.task_id}\t{' '.join(verdicts)}")
    except OrchardError as exc:
        fail(str(exc))
    typer.echo(f"{checked} tasks: {problems} problems (oracle must pass, noop and wrong must fail)")
    if problems:
        raise typer.Exit(1)


@claw.command()
def generate(
    out: Path = typer.Option(..., help="JSONL file to write the suite to (replaced)."),
    seed: int = typer.Option(0, help="Generation seed: the same seed gives the same suite."),
) -> None:
    """Generate a claw-mini-style suite from the templated task families."""
    from orchard_envs.tasks.claw.generate import generate_suite, write_suite

    tasks = generate_suite(seed=seed)
    write_suite(tasks, out)
    typer.echo(f"{len(tasks)} tasks written to {out}")
