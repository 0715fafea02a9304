"""The leaderboard: one row per run, ranked by a column, as a terminal table or as JSON, CSV or Markdown.

Rows are plain dicts (`run_record`) so every format, the HTML report included, shows the same numbers.
Numbers sort high to low and text A to Z unless told otherwise; unknown values (a cost nobody reported)
always sort last. Runs are ranked within their suite (an oracle on one suite and a model on another are
not competitors): the terminal and HTML show one table per suite, JSON/CSV/Markdown a rank per suite.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Literal

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchard_envs.errors import unknown_name
from orchard_envs.leaderboard.discovery import DEFAULT_DIRS, Run, Warn, load_runs

Format = Literal["table", "json", "csv", "md"]
FORMATS = ("table", "json", "csv", "md")


@dataclass(frozen=True)
class Column:
    """One column of the leaderboard table: the record field, its title and how to show it."""

    key: str  # the record field, also what --sort accepts
    title: str
    numeric: bool
    show: Callable[[dict[str, Any]], str]
    aliases: tuple[str, ...] = ()


def _rate(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: f"{record[key]:.3f}"


def _with_ci(key: str) -> Callable[[dict[str, Any]], str]:
    def show(record: dict[str, Any]) -> str:
        low, high = record[f"{key}_ci"]
        mark = "" if record["complete"] else "*"
        return f"{record[key]:.3f}{mark} [{low:.3f}, {high:.3f}]"

    return show


def _mean_ci(key: str) -> Callable[[dict[str, Any]], str]:
    def show(record: dict[str, Any]) -> str:
        low, high = record[f"{key}_ci"]
        return f"{record[key]:.3f} [{low:.3f}, {high:.3f}]"

    return show


def _share(record: dict[str, Any]) -> str:
    return "n/a" if record["valid_call_rate"] is None else f"{record['valid_call_rate']:.0%}"


def _text(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: "" if record[key] is None else str(record[key])


def _cost(record: dict[str, Any]) -> str:
    return "n/a" if record["total_cost"] is None else f"${record['total_cost']:.2f}"


COLUMNS = (
    Column("name", "Run", False, _text("name"), ("run",)),
    Column("suite", "Suite", False, _text("suite")),
    Column("split", "Split", False, _text("split")),
    Column("agent", "Agent", False, _text("agent")),
    Column("model", "Model", False, _text("model")),
    Column("harness", "Harness", False, _text("harness")),
    Column("k", "k", True, _text("k")),
    Column("tasks", "Tasks", True, _text("tasks")),
    Column("episodes", "Episodes", True, _text("episodes")),
    Column("success_rate", "Success", True, _rate("success_rate"), ("success",)),
    Column("pass_at_k", "pass@k [95% CI]", True, _with_ci("pass_at_k"), ("pass@k", "passk")),
    Column("pass_hat_k", "pass^k [95% CI]", True, _with_ci("pass_hat_k"), ("pass^k",)),
    # the env's reward: partial credit (Claw's checks) moves it before anything resolves
    Column("mean_reward", "Reward [95% CI]", True, _mean_ci("mean_reward"), ("reward",)),
    # episodes where the env ran at least one well-formed tool call (stats.has_valid_tool_call)
    Column("valid_call_rate", "Valid calls", True, _share, ("valid_calls", "valid")),
    Column("mean_turns", "Turns", True, lambda r: f"{r['mean_turns']:.1f}", ("turns",)),
    Column("mean_tokens", "Tokens", True, lambda r: f"{r['mean_tokens']:,.0f}", ("tokens",)),
    Column("total_cost", "Cost", True, _cost, ("cost",)),
    Column("infra_error_rate", "Infra err", True, _rate("infra_error_rate"), ("infra", "infra_errors")),
    Column("turn_limit_rate", "Turn cut", True, _rate("turn_limit_rate"), ("turn_limit", "cut")),
    # resolves the grader flagged (canaries passing, test-machinery tampering in the diff): still counted as
    # resolved above, shown here so a high success rate built on them is visible
    Column("suspicious_resolves", "Suspicious", True, _text("suspicious_resolves"), ("suspicious",)),
)
CI_KEYS = ("success_rate", "pass_at_k", "pass_hat_k", "mean_reward")


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def find_column(name: str) -> Column:
    """The column `--sort` names: its key, title or an alias, ignoring case, spaces, '-' and '_'."""
    wanted = _normal(name)
    for column in COLUMNS:
        if wanted in {_normal(column.key), _normal(column.title), *map(_normal, column.aliases)}:
            return column
    raise unknown_name("sort column", name, [column.key for column in COLUMNS])


def run_record(run: Run) -> dict[str, Any]:
    """The leaderboard row of one run, JSON-ready (intervals as [low, high])."""
    summary, config = run.summary, run.config
    record: dict[str, Any] = {
        "name": run.name,
        "suite": config.get("suite"),
        "split": config.get("split"),
        "agent": config.get("agent"),
        "model": run.model,
        "harness": config.get("harness"),
        "k": summary.k,
        "tasks": summary.tasks,
        "episodes": summary.episodes,
        "complete": summary.complete,
    }
    for key in CI_KEYS:
        record[key] = getattr(summary, key)
        record[f"{key}_ci"] = list(getattr(summary, "success_ci" if key == "success_rate" else f"{key}_ci"))
    calls_ci = summary.valid_call_ci
    record.update(
        valid_call_rate=summary.valid_call_rate,
        valid_call_ci=None if calls_ci is None else list(calls_ci),
    )
    record.update(
        mean_turns=summary.mean_turns,
        mean_tokens=summary.mean_tokens,
        mean_seconds=summary.mean_seconds,
        total_cost=summary.total_cost,
        infra_error_rate=summary.infra_error_rate,
        turn_limit_rate=summary.turn_limit_rate,
        suspicious_resolves=summary.suspicious_resolves,
        statuses=summary.statuses,
        per_category=summary.per_category,
        path=str(run.path),
        created_at=run.created_at,
    )
    return record


def _ordered(records: list[dict[str, Any]], column: Column, ascending: bool) -> list[dict[str, Any]]:
    by_name = sorted(records, key=lambda record: record["name"])
    known = [record for record in by_name if record[column.key] is not None]
    unknown = [record for record in by_name if record[column.key] is None]
    known.sort(key=lambda record: record[column.key], reverse=not ascending)
    return known + unknown


def rank(
    records: list[dict[str, Any]],
    sort: str = "pass_at_k",
    ascending: bool | None = None,
    by_suite: bool = True,
) -> list[dict]:
    """Records ordered by a column: numbers descending and text ascending by default, unknowns last, ties by
    run name; by default suite by suite (A to Z), each record's `rank` its place within its suite."""
    column = find_column(sort)
    ascending = not column.numeric if ascending is None else ascending
    groups = list(suite_groups(records).values()) if by_suite else [records]
    ranked = []
    for group in groups:
        for place, record in enumerate(_ordered(group, column, ascending), 1):
            ranked.append({**record, "rank": place})
    return ranked


def suite_groups(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records by suite (suites A to Z, each group in the given order)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda record: str(record["suite"] or "")):
        groups.setdefault(str(record["suite"] or "?"), []).append(record)
    return groups


def rich_tables(records: list[dict[str, Any]], by_suite: bool = True) -> Group | Table:
    """One terminal table per suite (the records as `rank` ordered them), or one for all."""
    if not by_suite:
        return rich_table(records)
    tables = [
        rich_table(group, f"orchard-bench leaderboard: {suite}")
        for suite, group in suite_groups(records).items()
    ]
    return Group(*tables)


def rich_table(records: list[dict[str, Any]], title: str = "orchard-bench leaderboard") -> Table:
    """The terminal table; cells are Text, so brackets in a user's run name are not read as markup."""
    incomplete = any(not record["complete"] for record in records)
    note = "* fewer than k trials for some task: pass@k and pass^k used k' = its trials"
    caption = note if incomplete else None
    table = Table(title=title, caption=caption)
    table.add_column("#", justify="right")
    for column in COLUMNS:
        table.add_column(column.title, justify="right" if column.numeric else "left")
    for place, record in enumerate(records, 1):
        table.add_row(str(record.get("rank", place)), *(Text(column.show(record)) for column in COLUMNS))
    return table


def to_json(records: list[dict[str, Any]]) -> str:
    """The records as indented JSON, one trailing newline."""
    return json.dumps(records, indent=2) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One line per run; each interval as two columns (`<key>_low`, `<key>_high`)."""
    fields = ["rank"]
    for column in COLUMNS:
        fields.append(column.key)
        if column.key in CI_KEYS:
            fields += [f"{column.key}_low", f"{column.key}_high"]
    fields += ["valid_call_low", "valid_call_high", "complete", "mean_seconds", "path"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for place, record in enumerate(records, 1):
        flat = {"rank": place, **record}
        for key in CI_KEYS:
            flat[f"{key}_low"], flat[f"{key}_high"] = record[f"{key}_ci"]
        flat["valid_call_low"], flat["valid_call_high"] = record["valid_call_ci"] or (None, None)
        writer.writerow(flat)
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    """User text shown literally: Markdown renderers would otherwise split on `|` and render HTML tags."""
    return escape(text, quote=False).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(records: list[dict[str, Any]]) -> str:
    """A GitHub-flavoured Markdown table, pipes in user text escaped."""
    titles = ["#", *(column.title for column in COLUMNS)]
    aligns = ["---:", *("---:" if column.numeric else "---" for column in COLUMNS)]
    lines = ["| " + " | ".join(titles) + " |", "|" + "|".join(aligns) + "|"]
    for place, record in enumerate(records, 1):
        cells = [str(record.get("rank", place)), *(_md_cell(column.show(record)) for column in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_runs(
    runs: list[Run],
    sort: str = "pass_at_k",
    fmt: Format = "table",
    ascending: bool | None = None,
    by_suite: bool = True,
) -> str | Table | Group:
    """Ranked runs (within their suite unless `by_suite` is False) as rich tables or a json/csv/md string."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    records = rank([run_record(run) for run in runs], sort, ascending, by_suite)
    if fmt == "json":
        return to_json(records)
    if fmt == "csv":
        return to_csv(records)
    if fmt == "md":
        return to_markdown(records)
    return rich_tables(records, by_suite)


def leaderboard(
    dirs: list[Path] | None = None,
    suite: str | None = None,
    sort: str = "pass_at_k",
    fmt: Format = "table",
    ascending: bool | None = None,
    warn: Warn | None = None,
    by_suite: bool = True,
) -> str | Table | Group:
    """The ranked runs found below `dirs` (default `runs/`) as a rich Table or a json/csv/md string;
    unreadable runs go to `warn`, one line each."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    find_column(sort)  # an unknown column fails before any run is read
    return format_runs(load_runs(dirs or DEFAULT_DIRS, suite, warn), sort, fmt, ascending, by_suite)
