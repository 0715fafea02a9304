"""`orchard-bench report`: the leaderboard and its charts as ONE self-contained HTML file.

Self-contained means it can be mailed or archived and still open offline, and that opening it contacts
nobody: CSS, the sorting script and the SVG charts are inline, and a Content-Security-Policy forbids any
load at all. Run names, models and configs are user text, so all of it is HTML-escaped.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from orchard_envs.leaderboard import charts
from orchard_envs.leaderboard.discovery import DEFAULT_DIRS, Run, Warn, load_runs
from orchard_envs.leaderboard.episode_view import write_episode_pages
from orchard_envs.leaderboard.stats import pass_at_k_curve
from orchard_envs.leaderboard.table import COLUMNS, rank, run_record, suite_groups

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table.board { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
table.board th, table.board td { border-bottom: 1px solid #ddd; padding: 3px 5px; white-space: nowrap; }
table.board th { cursor: pointer; background: #f4f4f4; user-select: none; white-space: normal; }
table.board td.text { white-space: normal; overflow-wrap: anywhere; min-width: 4em; max-width: 12em; }
table.board .ci { color: #666; font-size: 11px; } table.board a { color: inherit; }
table.board th[data-dir="asc"]::after { content: " \\25B2"; }
table.board th[data-dir="desc"]::after { content: " \\25BC"; }
td.num { text-align: right; } .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
svg.chart { display: block; margin: 8px 0 16px; } svg .title { font-weight: 600; font-size: 14px; }
svg .grid { stroke: #e5e5e5; } svg .axis { stroke: #555; } svg .tick, svg .legend { font-size: 11px; }
svg .label { font-size: 12px; fill: #444; } .warnings { color: #8a4b00; } .note { color: #666; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; }
"""
# Click a header to sort by it (numbers high-to-low first, text A-Z first); unknown values stay last.
SCRIPT = """
for (const th of document.querySelectorAll("table.board th")) {
  th.addEventListener("click", () => {
    const table = th.closest("table"), col = th.cellIndex, num = th.dataset.type === "num";
    const first = th.dataset.first, other = first === "asc" ? "desc" : "asc";
    const dir = th.dataset.dir === first ? other : first;
    for (const head of table.tHead.rows[0].cells) delete head.dataset.dir;
    th.dataset.dir = dir;
    const rows = [...table.tBodies[0].rows], value = (row) => row.cells[col].dataset.value;
    rows.sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const order = num ? Number(x) - Number(y) : x.localeCompare(y);
      return dir === "asc" ? order : -order;
    });
    table.tBodies[0].append(...rows);
  });
}
"""


def _sort_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return repr(float(value))


def _two_lines(text: str) -> str:
    """A number and its interval ("0.750 [0.500, 1.000]") on two lines, so the table fits a laptop screen."""
    main, bracket, interval = text.partition(" [")
    if not bracket:
        return escape(text)
    return f'{escape(main)}<br><span class="ci">[{escape(interval)}</span>'


def board(records: list[dict[str, Any]], colors: list[str], links: dict[str, str] | None = None) -> str:
    """The sortable leaderboard table; each cell keeps its raw value in data-value for the script, and each
    run's name links to its episodes (`links`: run name -> page)."""
    links = links or {}
    heads = ['<th data-type="num" data-first="asc" data-dir="asc">#</th>']
    for column in COLUMNS:
        kind, first = ("num", "desc") if column.numeric else ("text", "asc")
        title = _two_lines(column.title)
        heads.append(f'<th data-type="{kind}" data-first="{first}" data-key="{column.key}">{title}</th>')
    rows = []
    for place, (record, fill) in enumerate(zip(records, colors, strict=True), 1):
        cells = [f'<td class="num" data-value="{place}">{place}</td>']
        for column in COLUMNS:
            shown = _two_lines(column.show(record)) if column.numeric else escape(column.show(record))
            if column.key == "name":
                link = links.get(record["name"])
                shown = f'<a href="{escape(link)}">{shown}</a>' if link else shown
                shown = f'<span class="swatch" style="background:{fill}"></span>{shown}'
            css = ' class="num"' if column.numeric else ' class="text"'
            cells.append(f'<td{css} data-value="{escape(_sort_value(record[column.key]))}">{shown}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<table class="board"><thead><tr>'
        + "".join(heads)
        + "</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )


def category_charts(runs: list[Run], colors: dict[str, str]) -> list[str]:
    """One grouped-bar chart per suite: categories differ between suites (SWE repos, Claw families)."""
    by_suite: dict[str, list[Run]] = {}
    for run in runs:
        by_suite.setdefault(str(run.config.get("suite") or "?"), []).append(run)
    made = []
    for suite, members in sorted(by_suite.items()):
        categories = sorted({name for run in members for name in run.summary.per_category})
        series = [(run.name, [run.summary.per_category.get(name) for name in categories]) for run in members]
        made.append(
            charts.grouped_bars(
                f"Success by category: {suite}", categories, series, [colors[run.name] for run in members]
            )
        )
    return made


def render_report(
    runs: list[Run],
    warnings: Iterable[str] = (),
    sort: str = "pass_at_k",
    links: dict[str, str] | None = None,
) -> str:
    """The whole HTML page for these runs, ranked by `sort` within each suite (one table per suite); `links`
    maps a run's name to its episode pages."""
    records = rank([run_record(run) for run in runs], sort)
    by_name = {run.name: run for run in runs}
    ordered = [by_name[record["name"]] for record in records]
    colors = {run.name: charts.color(index) for index, run in enumerate(ordered)}
    fills = [colors[run.name] for run in ordered]
    sections = ["<h2>Leaderboard</h2>"]
    for suite, group in suite_groups(records).items():
        group_fills = [colors[record["name"]] for record in group]
        sections.append(f'<h3 class="suite">{escape(suite)}</h3>\n{board(group, group_fills, links)}')
    if any(not record["complete"] for record in records):
        sections.append(
            '<p class="note">* some task has fewer than k trials: pass@k and pass^k used k\' = '
            "its trial count.</p>"
        )
    if ordered:
        scatter = charts.scatter(
            "Success rate vs mean turns",
            "mean turns",
            "success rate",
            [(run.name, run.summary.mean_turns, run.summary.success_rate) for run in ordered],
            fills,
        )
        curves = charts.curves(
            "pass@k by k",
            "k",
            "pass@k",
            [(run.name, pass_at_k_curve(run.summary.trials, run.k)) for run in ordered],
            fills,
        )
        sections.append("<h2>Charts</h2>\n" + "\n".join([*category_charts(ordered, colors), scatter, curves]))
    else:
        sections.append('<p class="note">No runs found.</p>')
    configs = "\n".join(
        f"<h3>{escape(run.name)}</h3>"
        f'<p class="note">{escape(str(run.path))}, created {escape(run.created_at)}</p>'
        f"<pre>{escape(json.dumps(run.config, indent=2, sort_keys=True, default=str))}</pre>"
        for run in ordered
    )
    sections.append(f"<details><summary>Run configurations</summary>\n{configs}\n</details>")
    warned = "".join(f"<li>{escape(line)}</li>" for line in warnings)
    if warned:
        sections.append(f'<h2>Skipped</h2><ul class="warnings">{warned}</ul>')
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        "<title>orchard-bench report</title>\n"
        f"<style>{STYLE}</style></head>\n<body>\n<h1>orchard-bench report</h1>\n"
        f'<p class="note">{len(ordered)} runs, generated {stamp}. Runs are ranked within their suite. '
        "Intervals: 95% percentile bootstrap over tasks. Valid calls: episodes where the env ran at least "
        "one well-formed tool call. Click a column header to sort, a run's name for its episodes.</p>\n"
        + "\n".join(sections)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def save_html(path: Path, text: str) -> None:
    """Replace `path` atomically, so a browser never opens half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    dirs: list[Path] | None,
    out: Path,
    suite: str | None = None,
    sort: str = "pass_at_k",
    warn: Warn | None = None,
) -> list[Run]:
    """Write the report of every run below `dirs` (default `runs/`) to `out`; returns the runs shown.
    Skipped directories are passed to `warn` and listed in the report too."""
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn:
            warn(message)

    runs = load_runs(dirs or DEFAULT_DIRS, suite, note)
    save_report(Path(out), runs, warnings, sort)
    return runs


def save_report(out: Path, runs: list[Run], warnings: Iterable[str] = (), sort: str = "pass_at_k") -> None:
    """The report and, beside it, every run's episode pages (`<name>-episodes/`), which its rows link to."""
    links = write_episode_pages(out, [(run.name, run.path) for run in runs])
    save_html(out, render_report(runs, warnings, sort, links))
