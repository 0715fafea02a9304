"""`orchard-tasks`: build, list and check task suites (`orchard-tasks swe --help`, `... claw --help`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from orchard_envs.cli_support import agent_from_flags, typer_app
from orchard_envs.cli_support import fail as cli_fail
from orchard_envs.errors import OrchardError
from orchard_envs.tasks.claw.cli import claw

if TYPE_CHECKING:
    from orchard_envs.episodes import Episode

app = typer_app("orchard-tasks", "Build, list and check Orchard task suites.")
swe = typer.Typer(
    help="SWE suites: instances of real repositories graded by their tests.", no_args_is_help=True
)
app.add_typer(swe, name="swe")
app.add_typer(claw, name="claw")


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit with one line on stderr, prefixed `orchard-tasks:`."""
    cli_fail("orchard-tasks", message, code)


def log(message: str) -> None:
    """Progress on stderr, so stdout stays for results."""
    typer.echo(message, err=True)


@swe.command()
def build(
    config: Path = typer.Option(..., help="Build config (TOML), e.g. tasks/swe/data/swe-mini.toml."),
    out: Path = typer.Option(..., help="JSONL file the accepted instances are appended to."),
    library: list[str] = typer.Option([], help="Only these libraries of the config (repeatable)."),
    backend: str = typer.Option("local", help="Sandbox backend that runs the tests: local or docker."),
    jobs: int = typer.Option(2, min=1, help="Libraries built in parallel."),
    rewrite_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint that rewrites statements."),
    rewrite_model: str = typer.Option("default", help="Model name sent to the rewrite endpoint."),
    rewrite_key: str = typer.Option("", envvar="ORCHARD_REWRITE_API_KEY", help="API key for that endpoint."),
) -> None:
    """Make validated instances by injecting bugs into real libraries (resumable: ids in OUT are kept)."""
    from orchard_envs.sandbox import get_backend
    from orchard_envs.tasks.swe.build import BuildConfig, build_library
    from orchard_envs.tasks.swe.prepare import cache_root
    from orchard_envs.tasks.swe.statement import rewrite_statement

    try:
        settings = BuildConfig.load(config)
        chosen = [lib for lib in settings.library if not library or lib.name in library]
        if not chosen:
            fail(f"no library named {', '.join(library)} in {config}")
        done = (
            {json.loads(line)["instance_id"] for line in out.read_text().splitlines() if line}
            if out.exists()
            else set()
        )
        runner = get_backend(backend)
    except OrchardError as exc:
        fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)

    def one(lib) -> int:
        made = 0
        for instance in build_library(lib, settings, runner, cache_root(), log):
            if instance.instance_id in done:
                continue
            if rewrite_url:
                instance.problem_statement = rewrite_statement(
                    instance.problem_statement, instance.patch, rewrite_url, rewrite_model, rewrite_key
                )
            with out.open("a") as stream:  # append-only: a crash keeps every instance already accepted
                stream.write(instance.model_dump_json() + "\n")
            made += 1
        return made

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            total = sum(pool.map(one, chosen))
    except OrchardError as exc:
        fail(str(exc))
    finally:
        runner.close()
    log(f"{total} new instances appended to {out}")


@swe.command("list")
def list_instances(
    suite: str = typer.Option("swe-mini", help="Bundled suite name or instance file."),
    split: str | None = typer.Option(None, help="Only this split."),
) -> None:
    """One line per instance: id, split, repository, number of FAIL_TO_PASS / PASS_TO_PASS tests."""
    from orchard_envs.tasks.swe.instance import load_suite

    try:
        instances = load_suite(suite, split)
    except OrchardError as exc:
        fail(str(exc))
    for i in instances:
        state = "" if i.runnable else "  (no source: not runnable offline)"
        typer.echo(
            f"{i.instance_id}\t{i.split or '-'}\t{i.repo}\t{len(i.FAIL_TO_PASS)}/{len(i.PASS_TO_PASS)}{state}"
        )


def _episodes(
    *,
    suite: str,
    split: str | None,
    backend: str,
    repos_dir: Path | None,
    harness: str,
    agent: str,
    options: list[str],
    tasks: list[str],
    limit: int | None,
    max_steps: int,
) -> Iterator[Episode]:
    """Run `agent` through `harness` over the instances: all, the named ones, or the first `limit`."""
    import gymnasium as gym

    from orchard_envs.harnesses import get_harness
    from orchard_envs.runner import run_episode

    scaffold, policy = get_harness(harness), agent_from_flags("orchard-tasks", agent, options)
    env = gym.make(
        "orchard/SWE-v0",
        suite=suite,
        split=split,
        backend=backend,
        repos_dir=str(repos_dir) if repos_dir else None,
        max_steps=max_steps,
    )
    with env:
        known = {task.instance_id for task in env.unwrapped.instances}
        unknown = [task for task in tasks if task not in known]
        if unknown:
            fail(f"no instance {unknown[0]!r} in suite {suite!r}; `orchard-tasks swe list` shows them")
        chosen = tasks or [task.instance_id for task in env.unwrapped.instances][:limit]
        for task_id in chosen:
            yield run_episode(env, scaffold, policy, task_id=task_id)


SUITE = typer.Option("swe-mini", help="Bundled suite name or instance file.")
SPLIT = typer.Option(None, help="Only this split.")
BACKEND = typer.Option("local", help="Sandbox backend: local, docker or remote.")
HARNESS = typer.Option(
    "tool-calling", help="Harness the agent speaks through: tool-calling, react, bash-only."
)
REPOS_DIR = typer.Option(None, help="Folder of local clones <owner>__<name> (SWE-bench).")


@swe.command()
def check(
    suite: str = SUITE,
    split: str | None = SPLIT,
    backend: str = BACKEND,
    agent: str = typer.Option("oracle", help="oracle (the gold patch) or noop (submit at once)."),
    harness: str = HARNESS,
    repos_dir: Path | None = REPOS_DIR,
    preds: Path | None = typer.Option(None, help="Also write the patches as SWE-bench predictions (.json)."),
) -> None:
    """Run the oracle or no-op agent over a suite: every instance must resolve (oracle) or fail (noop)."""
    from orchard_envs.tasks.swe.swebench_io import prediction_row, write_predictions

    if agent not in ("oracle", "noop"):
        fail(f"unknown agent {agent!r}; use oracle or noop (other agents: `orchard-tasks swe run`)")
    rows, resolved, errors = [], 0, 0
    try:
        for episode in _episodes(
            suite=suite,
            split=split,
            backend=backend,
            repos_dir=repos_dir,
            harness=harness,
            agent=agent,
            options=[],
            tasks=[],
            limit=None,
            max_steps=50,
        ):
            meta = episode.metadata
            verdict = meta.verify_status or meta.status
            resolved += meta.resolved is True
            errors += verdict in ("error", "infra_error")
            typer.echo(f"{meta.task_id}\t{verdict}\t{meta.error[:120]}")
            rows.append(prediction_row(meta.task_id, agent, meta.patch))
    except OrchardError as exc:
        fail(str(exc))
    if preds:
        write_predictions(preds, rows)
    expected = len(rows) if agent == "oracle" else 0
    typer.echo(f"{agent}: {resolved}/{len(rows)} resolved, {errors} infrastructure errors")
    if resolved != expected or errors:
        raise typer.Exit(1)


@swe.command()
def run(
    out: Path = typer.Option(..., help="JSONL file the episodes are appended to (one per line)."),
    agent: str = typer.Option("hf", help="Agent: hf, openai, vllm, oracle, noop, random, replay."),
    option: list[str] = typer.Option([], help="Agent option key=value (repeatable), e.g. max_new_tokens=64."),
    harness: str = HARNESS,
    suite: str = SUITE,
    split: str | None = SPLIT,
    task: list[str] = typer.Option([], help="Only this instance id (repeatable)."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N instances."),
    max_steps: int = typer.Option(30, min=1, help="Env steps before the episode is cut (and graded)."),
    backend: str = BACKEND,
    repos_dir: Path | None = REPOS_DIR,
) -> None:
    """Run any agent over a suite and record every episode (messages, tools, metadata, token ids)."""
    from orchard_envs.episodes import EpisodeWriter

    count = resolved = 0
    try:
        with EpisodeWriter(out) as writer:
            for episode in _episodes(
                suite=suite,
                split=split,
                backend=backend,
                repos_dir=repos_dir,
                harness=harness,
                agent=agent,
                options=option,
                tasks=task,
                limit=limit,
                max_steps=max_steps,
            ):
                writer.write(episode)
                meta = episode.metadata
                count, resolved = count + 1, resolved + (meta.resolved is True)
                typer.echo(f"{meta.task_id}\t{meta.status}\treward={meta.reward:g}\tsteps={meta.steps}")
    except OrchardError as exc:
        fail(str(exc))
    typer.echo(f"{agent} via {harness}: {resolved}/{count} resolved; episodes in {out}")


def main() -> None:
    """The `orchard-tasks` console script."""
    app()


if __name__ == "__main__":
    main()
