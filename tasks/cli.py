"""`orchard-tasks`: build, list and check task suites. `orchard-tasks swe --help` for the SWE commands."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import typer

from orchard_envs.cli_support import fail as cli_fail
from orchard_envs.cli_support import typer_app
from orchard_envs.errors import OrchardError

app = typer_app("orchard-tasks", "Build, list and check Orchard task suites.")
swe = typer.Typer(
    help="SWE suites: instances of real repositories graded by their tests.", no_args_is_help=True
)
app.add_typer(swe, name="swe")


def fail(message: str, code: int = 2) -> NoReturn:
    cli_fail("orchard-tasks", message, code)


def log(message: str) -> None:
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


@swe.command()
def check(
    suite: str = typer.Option("swe-mini", help="Bundled suite name or instance file."),
    split: str | None = typer.Option(None, help="Only this split."),
    backend: str = typer.Option("local", help="Sandbox backend: local, docker or remote."),
    agent: str = typer.Option("oracle", help="oracle (the gold patch) or noop (submit at once)."),
    harness: str = typer.Option("tool-calling", help="Harness the agent speaks through."),
    repos_dir: Path | None = typer.Option(None, help="Folder of local clones <owner>__<name> (SWE-bench)."),
    preds: Path | None = typer.Option(None, help="Also write the patches as SWE-bench predictions (.json)."),
) -> None:
    """Run the oracle or no-op agent over a suite: every instance must resolve (oracle) or fail (noop)."""
    import gymnasium as gym

    from orchard_envs.agents import get_agent
    from orchard_envs.harnesses import get_harness
    from orchard_envs.runner import run_episode
    from orchard_envs.tasks.swe.swebench_io import prediction_row, write_predictions

    if agent not in ("oracle", "noop"):
        fail(f"unknown agent {agent!r}; use oracle or noop")
    rows, resolved, errors = [], 0, 0
    try:
        scaffold, policy = get_harness(harness), get_agent(agent)
        env = gym.make(
            "orchard/SWE-v0",
            suite=suite,
            split=split,
            backend=backend,
            repos_dir=str(repos_dir) if repos_dir else None,
        )
        with env:
            for task in env.unwrapped.instances:
                meta = run_episode(env, scaffold, policy, task_id=task.instance_id).metadata
                verdict = meta.verify_status or meta.status
                resolved += meta.resolved is True
                errors += verdict in ("error", "infra_error")
                typer.echo(f"{task.instance_id}\t{verdict}\t{meta.error[:120]}")
                rows.append(prediction_row(task.instance_id, agent, meta.patch))
    except OrchardError as exc:
        fail(str(exc))
    if preds:
        write_predictions(preds, rows)
    expected = len(rows) if agent == "oracle" else 0
    typer.echo(f"{agent}: {resolved}/{len(rows)} resolved, {errors} infrastructure errors")
    if resolved != expected or errors:
        raise typer.Exit(1)


def main() -> None:
    app()
