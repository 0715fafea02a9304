"""`orchard-bench run`: every (task, trial) of a suite, exactly once, with a live display; resumable."""

from __future__ import annotations

import contextlib
import importlib.metadata
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from orchard_envs.cli_support import build_agent, fail, parse_options
from orchard_envs.episodes import Episode
from orchard_envs.episodes.schema import current_versions
from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.leaderboard import suites
from orchard_envs.leaderboard.executor import EpisodeFactory, Job, OnResult, run_local
from orchard_envs.leaderboard.fingerprint import model_weights
from orchard_envs.leaderboard.store import ResultsStore
from orchard_envs.leaderboard.validate import check_run

SECRET_WORDS = ("key", "token", "secret", "password")
EXECUTORS = ("local", "ray")
OPTIONAL_VERSIONS = ("torch", "transformers", "openai", "vllm", "ray")


def run(
    suite: str = typer.Option(..., help="Bundled suite (swe-mini, claw-mini) or a suite file."),
    agent: str = typer.Option(
        ..., help="Agent, optionally with its model: oracle, noop, hf, hf:PATH, openai:MODEL."
    ),
    out: Path = typer.Option(..., help="Results directory: created, or resumed when it holds this same run."),
    harness: str = typer.Option("tool-calling", help="Harness: tool-calling, react, bash-only."),
    k: int = typer.Option(1, "-k", min=1, help="Trials per task."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, help="Episodes at once."),
    split: str | None = typer.Option(None, help="Only this split."),
    tasks: str | None = typer.Option(None, help="Only these task ids, comma-separated."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N tasks."),
    option: list[str] = typer.Option([], help="Agent option key=value (repeatable), e.g. temperature=0.7."),
    harness_option: list[str] = typer.Option([], help="Harness option key=value (repeatable)."),
    env_option: list[str] = typer.Option([], help="Env option key=value (repeatable), e.g. max_steps=30."),
    backend: str | None = typer.Option(None, help="Sandbox backend for SWE: local, docker or remote."),
    max_infra_retries: int = typer.Option(2, min=0, help="Retries of an episode that hit an infra fault."),
    executor: str = typer.Option("local", help="Where episodes run: local (threads) or ray (Ray actors)."),
    ray_address: str | None = typer.Option(
        None, envvar="RAY_ADDRESS", help="Ray cluster for --executor ray (host:port, ray://host:port)."
    ),
) -> None:
    """Run an agent over a suite, -k trials per task, -j at once; kill it anytime, rerun it to resume."""
    program = "orchard-bench"
    try:
        chosen = suites.load(suite, split)
        ids = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
        selected = _select(chosen, ids, limit)
        name, _, model = agent.partition(":")
        agent_options = parse_options(option) | ({"model": model} if model else {})
        env_options = parse_options(env_option) | ({"backend": backend} if backend else {})
        harness_options = parse_options(harness_option)
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
        if executor == "ray":
            from orchard_envs.leaderboard.ray_executor import check_address

            check_address(ray_address)
        # before anything is created in --out: a refused run leaves nothing that blocks the corrected one
        check_run(out, chosen.env_id, chosen.env_kwargs(split, [t.task_id for t in selected]) | env_options)
    except (OrchardError, ValueError) as exc:
        fail(program, str(exc))
    policy = build_agent(program, name, agent_options)
    from orchard_envs.harnesses import get_harness

    try:
        get_harness(harness, **harness_options)
        policy.preflight()
        config = _run_config(
            chosen, split, ids, limit, k, harness, harness_options, env_options, name, policy, agent_options,
            max_infra_retries, executor,
        )
        store = ResultsStore.create_or_resume(out, config)
    except OrchardError as exc:
        fail(program, str(exc))
    except OSError as exc:  # the folder became unwritable since the check, or root on a read-only mount
        fail(program, f"cannot write --out {out}: {exc.strerror or exc}; pass a folder you can write")
    done = store.done()
    work = [
        Job(t.task_id, trial, t.category)
        for t in selected
        for trial in range(k)
        if (t.task_id, trial) not in done
    ]
    factory = EpisodeFactory(
        chosen.env_id,
        chosen.env_kwargs(split, [t.task_id for t in selected]) | env_options,
        harness_name=harness,
        agent_name=name,
        harness_options=harness_options,
        agent_options=agent_options,
        shared_agent=policy,  # local workers clone it (a loaded model once); Ray actors build their own
    )
    console = Console(stderr=True, soft_wrap=True)
    if done:
        console.print(f"resuming {out}: {len(done)} episodes already recorded, {len(work)} to go")
    tally = _Tally(store)
    try:
        _execute(work, _runner(executor, factory, jobs, max_infra_retries, ray_address), tally, console)
    except OrchardError as exc:
        fail(program, str(exc))
    finally:
        store.export_episodes()
    console.print(tally.summary(out))
    if tally.interrupted:
        raise typer.Exit(130)


def _run_config(
    chosen: suites.Suite, split: str | None, ids: list[str] | None, limit: int | None, k: int, harness: str,
    harness_options: dict[str, Any], env_options: dict[str, Any], name: str, policy: Any,
    agent_options: dict[str, Any], max_infra_retries: int, executor: str,
) -> dict[str, Any]:
    """The run's identity (what a resume must match) and the facts recorded beside it."""
    return {
        "suite": chosen.name,
        "suite_version": chosen.version,
        "env_id": chosen.env_id,
        "split": split,
        "tasks": ids,
        "limit": limit,
        "k": k,
        "agent": name,
        "agent_options": _public(agent_options),
        "harness": harness,
        "harness_options": harness_options,
        "model": policy.model,
        "weights": _weights(policy),  # the checkpoint's hash, or the served model's id: in the identity
        "sampling": dict(policy.sampling),  # the effective settings, defaults included: in the identity
        "env_options": env_options,
        "max_infra_retries": max_infra_retries,
        "executor": executor,  # information only: a run may resume on another executor
        "git_revision": _git_revision(),
        "versions": _versions(),
    }


def _select(suite: suites.Suite, ids: list[str] | None, limit: int | None) -> list[suites.Task]:
    selected = list(suite.tasks)
    if ids:
        known = {t.task_id: t for t in selected}
        missing = [i for i in ids if i not in known]
        if missing:
            raise OrchardError(f"no task {missing[0]!r} in suite {suite.name!r}")
        selected = [known[i] for i in ids]
    return selected[:limit]


class _Tally:
    """What the live display shows, updated by worker threads as episodes commit."""

    def __init__(self, store: ResultsStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        rows = store.rows()
        self.finished = len(rows)
        self.resolved = sum(row["resolved"] is True for row in rows)
        self.errors = sum(row["status"] == "error" for row in rows)
        self.infra = sum(row["status"] == "infra_error" for row in rows)
        self.new = 0
        self.started = time.monotonic()
        self.interrupted = False

    def add(self, job: Job, episode: Episode, attempts: int) -> None:
        if not self.store.record(job.task_id, job.trial, episode, attempts=attempts, category=job.category):
            return
        status = episode.metadata.status
        with self.lock:
            self.finished += 1
            self.new += 1
            self.resolved += episode.metadata.resolved is True
            self.errors += status == "error"
            self.infra += status == "infra_error"

    def line(self) -> str:
        rate = self.resolved / self.finished if self.finished else 0.0
        per_min = 60 * self.new / max(time.monotonic() - self.started, 1e-9)
        return f"pass {rate:.0%} | errors {self.errors} | infra {self.infra} | {per_min:.1f} ep/min"

    def summary(self, out: Path) -> str:
        rate = self.resolved / self.finished if self.finished else 0.0
        note = " (interrupted: run the same command again to finish)" if self.interrupted else ""
        return (
            f"{self.finished} episodes, {self.resolved} resolved ({rate:.1%}), {self.errors} errors, "
            f"{self.infra} infra errors; results in {out}{note}"
        )


Runner = Callable[[list[Job], OnResult, threading.Event], None]


def _runner(executor: str, factory: EpisodeFactory, jobs: int, retries: int, address: str | None) -> Runner:
    """The chosen executor with everything but the work, the callback and the stop event bound."""
    if executor == "ray":
        from orchard_envs.leaderboard.ray_executor import run_ray

        return lambda work, on_result, stop: run_ray(work, factory, jobs, on_result, stop, retries, address)
    return lambda work, on_result, stop: run_local(work, factory, jobs, on_result, stop, retries)


def _execute(work: list[Job], runner: Runner, tally: _Tally, console: Console) -> None:
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: abandon the running episodes (they rerun on resume)
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.set()
        tally.interrupted = True
        console.print("stopping: finishing the running episodes (Ctrl-C again to abandon them)")

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[line]}"),
    )
    signal.signal(signal.SIGINT, interrupt)
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("episodes", total=len(work), line=tally.line())

            def on_result(job: Job, episode: Episode, attempts: int) -> None:
                tally.add(job, episode, attempts)
                progress.update(bar, advance=1, line=tally.line())

            runner(work, on_result, stop)
    except KeyboardInterrupt:
        tally.interrupted = True
    finally:
        signal.signal(signal.SIGINT, previous)


def _public(options: dict[str, Any]) -> dict[str, Any]:
    """Agent options as recorded: secrets (API keys, tokens) never reach the results."""
    return {k: v for k, v in options.items() if not any(word in k.lower() for word in SECRET_WORDS)}


def _weights(policy: Any) -> dict[str, Any] | None:
    """The agent's weights for the run's identity; an unreadable checkpoint is a one-line mistake."""
    try:
        return model_weights(policy)
    except OSError as exc:
        raise ConfigError(f"cannot read the model's files to identify its weights: {exc}") from exc


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def _versions() -> dict[str, str]:
    versions = current_versions()
    for package in OPTIONAL_VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions
