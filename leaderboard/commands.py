"""`orchard-bench leaderboard | report | export | show`: the commands that read finished runs.

They are plain functions, registered on the app in `cli.py`. A user's mistake (a folder with no runs, an
unknown column, a swebench export of a Claw run) is one line on stderr and exit 2; an unreadable run among
good ones is one warning line and the rest are still shown.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from orchard_envs.cli_support import fail
from orchard_envs.errors import OrchardError

if TYPE_CHECKING:
    from orchard_envs.leaderboard.discovery import Run

PROGRAM = "orchard-bench"
DEFAULT_SEARCH = (Path("runs"),)
PIPED_WIDTH = 400
DIRS = typer.Argument(None, help="Folders searched (recursively) for runs, i.e. folders with results.db.")
SUITE = typer.Option(None, help="Only runs of this suite.")
SORT = typer.Option(
    "pass_at_k", help="Column to rank by: a key or title (pass_at_k, success, turns, cost, ...)."
)


def warn(message: str) -> None:
    """A warning on stderr, prefixed with the program's name."""
    typer.echo(f"{PROGRAM}: warning: {message}", err=True)


def _load(dirs: list[Path] | None, suite: str | None, notes: list[str] | None = None) -> list[Run]:
    """The readable runs, warning about the rest; no run at all is a mistake worth one line."""
    from orchard_envs.leaderboard.discovery import DEFAULT_DIRS, load_runs

    searched = list(dirs or DEFAULT_DIRS)

    def note(message: str) -> None:
        warn(message)
        if notes is not None:
            notes.append(message)

    runs = load_runs(searched, suite, note)
    if not runs:
        where = ", ".join(str(path) for path in searched)
        of_suite = f" of suite {suite!r}" if suite else ""
        fail(PROGRAM, f"no readable runs{of_suite} under {where} (a run is a folder with results.db)")
    return runs


def leaderboard(
    dirs: list[Path] = DIRS,
    suite: str | None = SUITE,
    sort: str = SORT,
    ascending: bool | None = typer.Option(
        None, "--ascending/--descending", help="Order; default: numbers high to low, text A to Z."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json, csv or md."),
    by_suite: bool = typer.Option(
        True, "--by-suite/--one-table", help="Rank runs within their suite (default), or all in one table."
    ),
) -> None:
    """Rank every run found under the folders (default runs/): one row per run, ranked within its suite."""
    from orchard_envs.leaderboard.table import FORMATS, find_column, format_runs

    if fmt not in FORMATS:
        fail(PROGRAM, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        find_column(sort)
    except OrchardError as exc:
        fail(PROGRAM, str(exc))
    shown = format_runs(_load(dirs, suite), sort, fmt, ascending, by_suite)  # type: ignore[arg-type]
    if isinstance(shown, str):
        typer.echo(shown, nl=False)
    else:  # piped to a file or a pager: whole rows, not a table squeezed into 80 columns
        Console(width=None if sys.stdout.isatty() else PIPED_WIDTH).print(shown)


def report(
    dirs: list[Path] = DIRS,
    out: Path = typer.Option(Path("leaderboard.html"), help="The HTML file to write (replaced)."),
    suite: str | None = SUITE,
    sort: str = SORT,
) -> None:
    """Write one self-contained HTML report (the sortable leaderboard and its charts) and, beside it in
    <name>-episodes/, every run's episodes, which the table's run names link to."""
    from orchard_envs.leaderboard.report import save_report
    from orchard_envs.leaderboard.table import find_column

    try:
        find_column(sort)
    except OrchardError as exc:
        fail(PROGRAM, str(exc))
    notes: list[str] = []
    runs = _load(dirs, suite, notes)
    try:
        save_report(out, runs, notes, sort)
    except OSError as exc:
        fail(PROGRAM, f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"{len(runs)} runs -> {out}")


def export(
    run_dir: Path = typer.Argument(..., help="One run's folder (holding results.db)."),
    fmt: str = typer.Option(..., "--format", "-f", help="swebench (preds.json) or jsonl (the episodes)."),
    out: Path | None = typer.Option(
        None, help="File to write; default preds.json or export.jsonl in the run."
    ),
    trial: int = typer.Option(0, min=0, help="swebench: which trial's patch is each instance's prediction."),
) -> None:
    """Export a run: SWE-bench predictions, or its episodes as JSONL."""
    from orchard_envs.leaderboard.export import EXPORT_FORMATS, export_run

    if fmt not in EXPORT_FORMATS:
        fail(PROGRAM, f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    try:
        done = export_run(run_dir, fmt, out, trial)  # type: ignore[arg-type]
    except (OrchardError, sqlite3.Error, ValueError) as exc:
        fail(PROGRAM, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except OSError as exc:
        fail(PROGRAM, f"cannot write the export: {exc}")
    missing = f" ({done.missing} instances have no trial {trial} yet)" if done.missing else ""
    typer.echo(f"{done.written} {'predictions' if fmt == 'swebench' else 'episodes'} -> {done.path}{missing}")


def show(
    run: str = typer.Argument(
        ..., help="A run's folder, or its name as the leaderboard shows it (under --dir)."
    ),
    task: str | None = typer.Option(None, help="The task id; default: the run's first task."),
    trial: int | None = typer.Option(None, min=0, help="Which trial; default: the task's first."),
    dirs: list[Path] = typer.Option(list(DEFAULT_SEARCH), "--dir", help="Where run names are looked up."),
    width: int | None = typer.Option(None, help="Columns to render in; default: the terminal's."),
) -> None:
    """Watch one episode: its turns, tool calls, observations and grading."""
    from orchard_envs.leaderboard.episode_view import find_run, load_episode, render_terminal

    try:
        run_dir, name = find_run(run, dirs)
        episode, task, trial = load_episode(run_dir, task, trial)
    except (OrchardError, sqlite3.Error, ValueError) as exc:
        fail(PROGRAM, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    Console(width=width or (None if sys.stdout.isatty() else 120)).print(
        render_terminal(episode, name, trial)
    )
