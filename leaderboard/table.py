"""The leaderboard: one row per run, ranked by a column, as a terminal table or as JSON, CSV or Markdown.

Rows are plain dicts (`run_record`) so every format, the HTML report included, shows the same numbers.
Numbers sort high to low and text A to Z unless told otherwise; unknown values (a cost nobody reported)
always sort last.
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

from rich.table import Table
from rich.text import Text

from orchard_envs.errors import unknown_name
from orchard_envs.leaderboard.discovery import DEFAULT_DIRS, Run, Warn, load_runs

Format = Literal["table", "json", "csv", "md"]
FORMATS = ("table", "json", "csv", "md")


@dataclass(frozen=True)
class Column:
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
    Column("mean_turns", "Turns", True, lambda r: f"{r['mean_turns']:.1f}", ("turns",)),
    Column("mean_tokens", "Tokens", True, lambda r: f"{r['mean_tokens']:,.0f}", ("tokens",)),
    Column("total_cost", "Cost", True, _cost, ("cost",)),
    Column("infra_error_rate", "Infra err", True, _rate("infra_error_rate"), ("infra", "infra_errors")),
    Column("turn_limit_rate", "Turn cut", True, _rate("turn_limit_rate"), ("turn_limit", "cut")),
    # resolves the grader flagged (canaries passing, test-machinery tampering in the diff): still counted as
    # resolved above, shown here so a high success rate built on them is visible
    Column("suspicious_resolves", "Suspicious", True, _text("suspicious_resolves"), ("suspicious",)),
)
CI_KEYS = ("success_rate", "pass_at_k", "pass_hat_k")


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


def rank(records: list[dict[str, Any]], sort: str = "pass_at_k", ascending: bool | None = None) -> list[dict]:
    """Records ordered by a column: numbers descending and text ascending by default, unknowns last,
    ties by run name."""
    column = find_column(sort)
    ascending = not column.numeric if ascending is None else ascending
    by_name = sorted(records, key=lambda record: record["name"])
    known = [record for record in by_name if record[column.key] is not None]
    unknown = [record for record in by_name if record[column.key] is None]
    known.sort(key=lambda record: record[column.key], reverse=not ascending)
    return known + unknown


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
        table.add_row(str(place), *(Text(column.show(record)) for column in COLUMNS))
    return table


def to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=2) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One line per run; each interval as two columns (`<key>_low`, `<key>_high`)."""
    fields = ["rank"]
    for column in COLUMNS:
        fields.append(column.key)
        if column.key in CI_KEYS:
            fields += [f"{column.key}_low", f"{column.key}_high"]
    fields += ["complete", "mean_seconds", "path"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for place, record in enumerate(records, 1):
        flat = {**record, "rank": place}
        for key in CI_KEYS:
            flat[f"{key}_low"], flat[f"{key}_high"] = record[f"{key}_ci"]
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
        cells = [str(place), *(_md_cell(column.show(record)) for column in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_runs(
    runs: list[Run], sort: str = "pass_at_k", fmt: Format = "table", ascending: bool | None = None
) -> str | Table:
    """Ranked runs as a rich Table or a json/csv/md string."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    records = rank([run_record(run) for run in runs], sort, ascending)
    if fmt == "json":
        return to_json(records)
    if fmt == "csv":
        return to_csv(records)
    if fmt == "md":
        return to_markdown(records)
    return rich_table(records)


def leaderboard(
    dirs: list[Path] | None = None,
    suite: str | None = None,
    sort: str = "pass_at_k",
    fmt: Format = "table",
    ascending: bool | None = None,
    warn: Warn | None = None,
) -> str | Table:
    """The ranked runs found below `dirs` (default `runs/`) as a rich Table or a json/csv/md string;
    unreadable runs go to `warn`, one line each."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    find_column(sort)  # an unknown column fails before any run is read
    return format_runs(load_runs(dirs or DEFAULT_DIRS, suite, warn), sort, fmt, ascending)
