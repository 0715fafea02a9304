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
# score = 0.8 x completion + 0.2 x robustness in floats: a perfect episode is 1.0 within rounding.
SCORE_SLACK = 1e-9


def fail(message: str) -> None:
    """Exit with one line on stderr, prefixed `orchard-tasks:`."""
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
    """Every task's oracle must score 1.0; `noop` and its do-the-wrong-thing plan must fail."""
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
                    # A passing oracle below 1.0 misses a check no plan meets: the task is broken.
                    ok = ok and (name != "oracle" or meta.reward >= 1.0 - SCORE_SLACK)
                    problems += not ok
                    verdicts.append(f"{name}={meta.reward:.2f}{'' if ok else '!'}")
                checked += 1
                typer.echo(f"{claw_task.task_id}\t{' '.join(verdicts)}")
    except OrchardError as exc:
        fail(str(exc))
    typer.echo(f"{checked} tasks: {problems} problems (oracle must score 1.00, noop and wrong must fail)")
    if problems:
        raise typer.Exit(1)


@claw.command()
def run(
    out: Path = typer.Option(..., help="JSONL file the episodes are appended to (one per line)."),
    agent: str = typer.Option("hf", help="Agent: hf, openai, vllm, oracle, noop, random, replay."),
    option: list[str] = typer.Option([], help="Agent option key=value (repeatable), e.g. max_new_tokens=64."),
    harness: str = typer.Option("tool-calling", help="Harness: tool-calling or react."),
    suite: str = SUITE,
    split: str | None = SPLIT,
    task: list[str] = typer.Option([], help="Only this task id (repeatable)."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N tasks."),
    trials: int = typer.Option(3, min=1, help="Episodes per task: pass@k and pass^k use k = trials."),
) -> None:
    """Run an agent over a suite `trials` times per task, record every episode, report pass@k and pass^k."""
    import gymnasium as gym

    from orchard_envs.cli_support import agent_from_flags
    from orchard_envs.episodes import EpisodeWriter
    from orchard_envs.harnesses import get_harness
    from orchard_envs.leaderboard.stats import pass_at_k, pass_hat_k
    from orchard_envs.runner import run_episode

    policy = agent_from_flags("orchard-tasks", agent, option)
    outcomes: dict[str, list[bool]] = {}
    try:
        scaffold = get_harness(harness)
        with (
            gym.make("orchard/Claw-v0", suite=suite, split=split, task_ids=task or None) as env,
            EpisodeWriter(out) as writer,
        ):
            for claw_task in env.unwrapped.tasks[:limit]:
                for trial in range(trials):
                    episode = run_episode(
                        env, scaffold, policy, task_id=claw_task.task_id, seed=trial, trial=trial
                    )
                    writer.write(episode)
                    meta = episode.metadata
                    outcomes.setdefault(claw_task.task_id, []).append(meta.resolved is True)
                    typer.echo(f"{claw_task.task_id}\ttrial {trial}\t{meta.status}\tscore={meta.reward:.2f}")
    except OrchardError as exc:
        fail(str(exc))
    runs = list(outcomes.values())
    at_k = sum(pass_at_k(len(r), sum(r), trials) for r in runs) / len(runs)
    hat_k = sum(pass_hat_k(len(r), sum(r), trials) for r in runs) / len(runs)
    summary = f"{len(runs)} tasks x {trials}: pass@{trials} {at_k:.3f}, pass^{trials} {hat_k:.3f}"
    typer.echo(f"{summary}; episodes in {out}")


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
