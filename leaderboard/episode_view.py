"""One episode of a run, to watch: in the terminal (`orchard-bench show`) and as HTML pages beside the report.

Both views walk the same transcript: the instruction, each assistant turn with its tool calls, the env's
observations (clipped: an SWE test log can be megabytes), the harness's format-error notes, then the
grading. Everything in an episode is model or user text, so the terminal view builds rich Text (never
markup) and the HTML view escapes all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError, unknown_name
from orchard_envs.leaderboard.discovery import DEFAULT_DIRS, find_run_dirs, run_name
from orchard_envs.leaderboard.stats import has_valid_tool_call
from orchard_envs.leaderboard.store import DB_NAME, ResultsStore

SHOWN_CHARS = 3000  # per message: enough to follow an episode, not a whole test log
ROLE_STYLE = {"system": "dim", "user": "cyan", "assistant": "green", "tool": "yellow"}


@dataclass(frozen=True)
class Step:
    """One message as shown: who, its text, and the tool calls it makes ("name(arguments)")."""

    role: str
    label: str
    text: str
    calls: tuple[str, ...] = ()


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(part.get("text", f"[{part.get('type')}]")) for part in content)
    return "" if content is None else str(content)


def _clip(text: str, limit: int = SHOWN_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit:,} more characters]"


def _call(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments") or ""
    with contextlib.suppress(json.JSONDecodeError, TypeError):  # else as written: a malformed call shows
        arguments = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    return f"{function.get('name')}({_clip(str(arguments))})"


def steps(episode: Episode) -> Iterator[Step]:
    """The transcript as labelled steps; turn numbers count assistant messages."""
    turn = 0
    for message in episode.messages:
        role, text = message.get("role", "?"), _content(message)
        if role == "assistant":
            turn += 1
            calls = tuple(_call(call) for call in message.get("tool_calls") or [])
            yield Step(role, f"turn {turn}: assistant", _clip(text), calls)
        elif role == "tool":
            yield Step(role, "observation", _clip(text))
        elif role == "user" and turn and text.startswith("Format error:"):
            yield Step("user", "format error (harness)", _clip(text))
        elif role == "user" and turn:
            yield Step("tool", "observation", _clip(text))  # text harnesses answer calls as user messages
        else:
            yield Step(role, "instruction" if role == "user" else role, _clip(text))


def facts(episode: Episode, run: str, trial: int) -> list[tuple[str, str]]:
    """The header of an episode: what ran, how it ended."""
    meta = episode.metadata
    tokens = meta.tokens
    valid = has_valid_tool_call(episode.messages, meta.steps)
    return [
        ("run", run),
        ("task", f"{meta.task_id} (trial {trial})"),
        ("agent", f"{meta.agent}" + (f" / {meta.model}" if meta.model else "")),
        ("harness", meta.harness),
        ("status", meta.status),
        ("steps / format errors", f"{meta.steps} / {meta.format_errors}"),
        ("valid tool call", "yes" if valid else "no"),
        ("tokens", f"{tokens.get('prompt', 0):,} prompt, {tokens.get('completion', 0):,} completion"),
        ("seconds", f"{meta.timings.get('episode', 0.0):.1f}"),
    ]


def grading(episode: Episode) -> list[tuple[str, str]]:
    """The grader's verdict as the episode records it."""
    meta = episode.metadata
    extra = meta.model_extra or {}
    rows = [
        ("resolved", "not graded" if meta.resolved is None else str(meta.resolved)),
        ("reward", f"{meta.reward:.3f}"),
        ("verdict", str(extra.get("verify_status") or "")),
    ]
    rows += [(f"  {name}", f"{value:.3f}") for name, value in sorted(meta.reward_breakdown.items())]
    if extra.get("suspicious"):
        rows.append(("suspicious", "; ".join(map(str, extra["suspicious"]))))
    if extra.get("error"):
        rows.append(("reason / error", _clip(str(extra["error"]), 500)))
    return [(name, value) for name, value in rows if value]


# ---------------------------------------------------------------- finding the episode


def find_run(name: str, dirs: Iterable[Path] = DEFAULT_DIRS) -> tuple[Path, str]:
    """A run folder given as a path, or by its leaderboard name under `dirs`; else a ConfigError with the
    close names."""
    path = Path(name)
    if (path / DB_NAME).is_file():
        return path, path.resolve().name
    searched = [Path(d) for d in dirs if Path(d).is_dir()]
    found = {run_name(run_dir, root): run_dir for run_dir, root in find_run_dirs(searched)}
    if name in found:
        return found[name], name
    if not found:
        where = ", ".join(str(d) for d in dirs)
        raise ConfigError(f"no run {name!r}: not a folder with {DB_NAME}, and no runs under {where}")
    raise unknown_name("run", name, found)


def load_episode(run_dir: Path, task: str | None, trial: int | None) -> tuple[Episode, str, int]:
    """The episode of (task, trial): by default the first task and its first trial; unknown ones are a
    ConfigError naming the close task ids or the trials there are."""
    store = ResultsStore.open(run_dir, readonly=True)
    try:
        done = store.done()
        trials: dict[str, list[int]] = {}
        for task_id, number in sorted(done):
            trials.setdefault(task_id, []).append(number)
        if not trials:
            raise ConfigError(f"{run_dir} has no finished episodes yet")
        task = task if task is not None else next(iter(trials))
        if task not in trials:
            raise unknown_name("task", task, trials)
        trial = trials[task][0] if trial is None else trial
        if trial not in trials[task]:
            have = ", ".join(map(str, trials[task]))
            raise ConfigError(f"task {task!r} has no finished trial {trial}; its trials: {have}")
        episode = store.episode(task, trial)
    finally:
        store.close()
    assert episode is not None  # it is in done()
    return episode, task, trial


# ---------------------------------------------------------------- the terminal


def _pairs_table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    return table


def render_terminal(episode: Episode, run: str, trial: int) -> RenderableType:
    """The episode for rich: a header, one panel per message, the grading."""
    parts: list[RenderableType] = [Panel(_pairs_table(facts(episode, run, trial)), title="episode")]
    for step in steps(episode):
        body = Text(step.text)
        for call in step.calls:
            body.append(("\n" if body else "") + "-> ", style="bold magenta")
            body.append(call, style="magenta")
        style = "red" if step.label.startswith("format error") else ROLE_STYLE.get(step.role, "")
        parts.append(Panel(body, title=Text(step.label), title_align="left", border_style=style))
    parts.append(Panel(_pairs_table(grading(episode)), title="grading", border_style="bold"))
    return Group(*parts)


# ---------------------------------------------------------------- HTML pages beside the report

CSP = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 20px; } table.facts td { padding: 2px 12px 2px 0; vertical-align: top; }
.msg { border-left: 4px solid #ccc; margin: 10px 0; padding: 4px 10px; }
.msg h3 { font-size: 13px; margin: 0 0 4px; color: #555; }
.assistant { border-color: #2a8a2a; } .tool { border-color: #c9a000; } .user { border-color: #1a7fb5; }
.system { border-color: #aaa; color: #666; } .format-error { border-color: #c62828; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 2px 0; font-size: 12.5px; }
pre.call { color: #6a1b9a; } table.episodes td, table.episodes th { padding: 3px 10px; text-align: left; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _facts_html(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def episode_html(episode: Episode, run: str, trial: int, back: str | None = None) -> str:
    """One episode as a self-contained HTML page (no script; nothing loaded)."""
    parts = [f'<p><a href="{escape(back)}">all episodes of this run</a></p>'] if back else []
    parts.append(f"<h1>{escape(episode.metadata.task_id)}, trial {trial}</h1>")
    parts.append(_facts_html(facts(episode, run, trial)))
    for step in steps(episode):
        kind = "format-error" if step.label.startswith("format error") else step.role
        calls = "".join(f'<pre class="call">-&gt; {escape(call)}</pre>' for call in step.calls)
        text = f"<pre>{escape(step.text)}</pre>" if step.text else ""
        parts.append(f'<div class="msg {kind}"><h3>{escape(step.label)}</h3>{text}{calls}</div>')
    parts.append(f"<h2>Grading</h2>{_facts_html(grading(episode))}")
    return _page(f"{run}: {episode.metadata.task_id} #{trial}", "\n".join(parts))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o644)


def write_run_pages(run_dir: Path, run: str, folder: Path) -> None:
    """`folder/index.html` listing the run's episodes, and one page per episode."""
    folder.mkdir(parents=True)
    store = ResultsStore.open(run_dir, readonly=True)
    try:
        rows = store.rows()
        lines = []
        for number, row in enumerate(rows):
            episode = store.episode(row["task_id"], row["trial"])
            if episode is None:
                continue
            page = f"{number:05d}-{_safe(row['task_id'])}-{row['trial']}.html"
            _write(folder / page, episode_html(episode, run, row["trial"], back="index.html"))
            resolved = "" if row["resolved"] is None else ("yes" if row["resolved"] else "no")
            cells = [row["task_id"], str(row["trial"]), row["status"], resolved, f"{row['reward']:.3f}"]
            tds = "".join(f"<td>{escape(cell)}</td>" for cell in cells)
            lines.append(f'<tr><td><a href="{page}">view</a></td>{tds}</tr>')
    finally:
        store.close()
    head = "".join(f"<th>{t}</th>" for t in ("", "task", "trial", "status", "resolved", "reward"))
    body = f'<h1>{escape(run)}: episodes</h1>\n<table class="episodes"><tr>{head}</tr>\n' + "\n".join(lines)
    _write(folder / "index.html", _page(f"{run}: episodes", body + "\n</table>"))


def episodes_folder(report: Path) -> Path:
    """Where the report's episode pages live: beside it, named after it."""
    return report.with_name(f"{report.stem}-episodes")


def run_folder_name(index: int, run: str) -> str:
    """A run's folder among the episode pages (run names may hold '/' and anything else)."""
    return f"{index:03d}-{_safe(run)}"


def write_episode_pages(report: Path, runs: list[tuple[str, Path]]) -> dict[str, str]:
    """Write every run's episode pages beside `report` (replacing the previous ones whole); returns each
    run's index page, relative to the report, for its row's link."""
    target = episodes_folder(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    links = {}
    try:
        for index, (run, run_dir) in enumerate(runs):
            name = run_folder_name(index, run)
            write_run_pages(run_dir, run, fresh / name)
            links[run] = f"{target.name}/{name}/index.html"
        os.chmod(fresh, 0o755)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        fresh.rename(target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return links
