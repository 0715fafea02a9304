"""OSWorld-style task configs and evaluators, the subset Desktop-v0 runs (docs/desktop.md lists it).

A config is a list of setup steps `{"type": ..., "parameters": {...}}`: `upload_file` (files given inline
as `content`, since nothing is downloaded), `execute` (a command in the sandbox), `launch` (an app of
`apps.APPS` or a command), `open` (a path with the app its extension names) and `sleep`. An evaluator is
`{"func": metric, "result": getter, "expected": {"type": "rule", "rules": {...}}}`, or
`{"func": "infeasible"}`. Getters read the sandbox through the host's link-free file API; spreadsheets
are read by `ssconvert` (Gnumeric's own parser) in a fresh grading sandbox with no network, so an agent's
file is parsed where it can harm nothing, and by a process the agent never touched.
"""

from __future__ import annotations

import csv
import io
import shlex
import time
from collections.abc import Callable
from typing import Any

from orchard_envs.errors import ConfigError, SandboxError, SandboxFileNotFound, unknown_name
from orchard_envs.sandbox.spec import SandboxSpec

MAX_FILE = 5 * 1024**2


def run_config(steps: list[dict[str, Any]], session: Any) -> None:
    """Run a task's setup steps in order on the episode's desktop session."""
    for step in steps:
        kind, params = step.get("type"), step.get("parameters", {})
        if kind not in SETUP:
            raise unknown_name("config step", str(kind), SETUP)
        SETUP[kind](session, params)


def _upload(session: Any, params: dict[str, Any]) -> None:
    for item in params["files"]:
        session.sandbox.write_file(item["path"], item["content"])


def _execute(session: Any, params: dict[str, Any]) -> None:
    command = params["command"]
    command = command if isinstance(command, str) else shlex.join(command)
    result = session.sandbox.exec(command, timeout=60, session=False)
    if result.exit_code != 0:
        raise SandboxError(f"setup command {command!r} failed: {result.output.strip()[-500:]}")


def _launch(session: Any, params: dict[str, Any]) -> None:
    command = params["command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    from orchard_envs.desktop.apps import APPS

    if argv and argv[0] in APPS:
        session.launch(argv[0], *argv[1:])
    else:
        session.start(argv, "launch")


SETUP: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "upload_file": _upload,
    "execute": _execute,
    "command": _execute,
    "launch": _launch,
    "open": lambda session, params: session.open(params["path"]),
    "sleep": lambda session, params: time.sleep(min(10.0, float(params.get("seconds", 1)))),
}


# -- grading -------------------------------------------------------------------------------------
def evaluate(evaluator: dict[str, Any], session: Any, backend: Any, failed: bool) -> tuple[float, str]:
    """The score (0 or 1) and why. `failed`: the agent ended with `fail` (only infeasible tasks want it)."""
    func = evaluator["func"]
    if func == "infeasible":
        return (1.0, "the agent said the task cannot be done") if failed else (0.0, "the task is infeasible")
    if failed:
        return 0.0, "the agent gave up (fail) on a feasible task"
    if func not in METRICS:
        raise unknown_name("metric", func, [*METRICS, "infeasible"])
    result = get_result(evaluator["result"], session, backend)
    return METRICS[func](result, evaluator.get("expected", {}).get("rules", {}))


def get_result(getter: dict[str, Any], session: Any, backend: Any) -> Any:
    """What a getter fetches from the episode's sandbox (a file's bytes, a folder's names, cells)."""
    kind = getter.get("type")
    if kind == "vm_file":
        return _file(session, getter["path"])
    if kind == "vm_dir_listing":
        try:
            return sorted(entry.name for entry in session.sandbox.list_dir(getter["path"]))
        except SandboxFileNotFound:
            return None
    if kind == "vm_spreadsheet_cells":
        data = _file(session, getter["path"])
        return None if data is None else spreadsheet_cells(data, getter["path"], backend)
    raise unknown_name("result getter", str(kind), ["vm_file", "vm_dir_listing", "vm_spreadsheet_cells"])


def _file(session: Any, path: str) -> bytes | None:
    try:
        data = session.sandbox.read_file(path)
    except SandboxFileNotFound:
        return None
    except SandboxError:  # a FIFO, a folder, a link out of the sandbox: not a saved file
        return None
    return data if len(data) <= MAX_FILE else None


def spreadsheet_cells(data: bytes, path: str, backend: Any) -> dict[str, str] | None:
    """Every non-empty cell's shown value (`{"A1": "3"}`), computed by ssconvert in a fresh sandbox."""
    name = "book" + (path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ".gnumeric")
    with backend.create(SandboxSpec(network=False, memory="1g", ttl=120.0)) as grader:
        grader.write_file(f"/workspace/{name}", data)
        done = grader.exec(
            f"ssconvert --export-type=Gnumeric_stf:stf_csv {name} out.csv", timeout=60, session=False
        )
        if done.exit_code != 0:
            return None
        text = grader.read_file("/workspace/out.csv").decode("utf-8", "replace")
    cells = {}
    for row, values in enumerate(csv.reader(io.StringIO(text)), start=1):
        for col, value in enumerate(values):
            if value != "":
                cells[f"{column_name(col)}{row}"] = value
    return cells


def column_name(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n").rstrip("\n")


def compare_text_file(result: bytes | None, rules: dict[str, Any]) -> tuple[float, str]:
    """The saved file equals `rules["text"]` (line endings and trailing newlines aside)."""
    if result is None:
        return 0.0, "the file is missing"
    if _normal(result.decode("utf-8", "replace")) == _normal(rules["text"]):
        return 1.0, "the file has the expected contents"
    return 0.0, "the file's contents differ from what was asked"


def check_cells(result: dict[str, str] | None, rules: dict[str, Any]) -> tuple[float, str]:
    """Each cell in `rules["cells"]` shows the expected value (numbers compared as numbers)."""
    if result is None:
        return 0.0, "the spreadsheet is missing or does not parse"
    wrong = [ref for ref, want in rules["cells"].items() if not _same(result.get(ref), str(want))]
    if wrong:
        return 0.0, f"cells {', '.join(wrong)} differ from what was asked"
    return 1.0, "every checked cell has the expected value"


def _same(got: str | None, want: str) -> bool:
    if got is None:
        return False
    try:
        return abs(float(got) - float(want)) < 1e-9  # exact decimal inputs; only float noise tolerated
    except ValueError:
        return got.strip() == want.strip()


def check_dir(result: list[str] | None, rules: dict[str, Any]) -> tuple[float, str]:
    """The folder holds every name in `rules["present"]` and none in `rules["absent"]`."""
    if result is None:
        return 0.0, "the folder is missing"
    missing = [name for name in rules.get("present", []) if name not in result]
    extra = [name for name in rules.get("absent", []) if name in result]
    if missing or extra:
        return 0.0, f"missing {missing}, still present {extra}"
    return 1.0, "the folder holds what was asked"


METRICS: dict[str, Callable[[Any, dict[str, Any]], tuple[float, str]]] = {
    "compare_text_file": compare_text_file,
    "check_cells": check_cells,
    "check_dir": check_dir,
}


def check_task(config: list[dict[str, Any]], evaluator: dict[str, Any]) -> None:
    """Refuse a task whose steps, metric or getter this subset does not know (at load, not mid-run)."""
    for step in config:
        if step.get("type") not in SETUP:
            raise unknown_name("config step", str(step.get("type")), SETUP)
    funcs = evaluator.get("func")
    if funcs != "infeasible" and funcs not in METRICS:
        raise ConfigError(f"unknown metric {funcs!r}; known: infeasible, {', '.join(METRICS)}")
