"""The templated families of `desktop-mini`: each yields tasks from a seeded draw, with the oracle's plan.

An oracle plan is a list of steps the desktop oracle turns into real input events: `focus` (click in the
middle of an app's window, which openbox puts where `apps.LAYOUT` says), `click` (at `dx`, `dy` from the
window's frame), `hotkey`, `press`, `type`, `wait`,
`done` and `fail`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

WORDS = (
    "apple",
    "river",
    "copper",
    "lantern",
    "meadow",
    "orbit",
    "pepper",
    "quartz",
    "saffron",
    "tundra",
    "violet",
    "walnut",
    "yellow",
    "zephyr",
    "harbor",
    "glacier",
)
WS = "/workspace"

Plan = list[dict[str, Any]]
Task = dict[str, Any]


def _focus(app: str) -> dict[str, Any]:
    return {"do": "focus", "app": app}


def _save_and_done() -> Plan:
    return [{"do": "hotkey", "keys": ["ctrl", "s"]}, {"do": "wait", "seconds": 1.0}, {"do": "done"}]


def _text_file(path: str, rng: random.Random) -> dict[str, Any]:
    lines = [" ".join(rng.sample(WORDS, 3)) for _ in range(rng.randint(2, 4))]
    return {
        "type": "upload_file",
        "parameters": {"files": [{"path": path, "content": "\n".join(lines) + "\n"}]},
    }


def _file_check(path: str, text: str) -> dict[str, Any]:
    return {
        "func": "compare_text_file",
        "result": {"type": "vm_file", "path": path},
        "expected": {"type": "rule", "rules": {"text": text}},
    }


def text_replace(rng: random.Random) -> Task:
    """Replace a text file's whole contents in Mousepad and save."""
    name, line = rng.choice(WORDS), f"{rng.choice(WORDS)} {rng.randint(100, 999)} {rng.choice(WORDS)}"
    path = f"{WS}/{name}.txt"
    return {
        "instruction": f"In Mousepad, replace the whole text of {name}.txt with exactly this line: {line} "
        "- then save the file.",
        "config": [_text_file(path, rng), {"type": "open", "parameters": {"path": path}}],
        "evaluator": _file_check(path, line),
        "oracle": [
            _focus("Mousepad"),
            {"do": "hotkey", "keys": ["ctrl", "a"]},
            {"do": "type", "text": line},
            *_save_and_done(),
        ],
    }


def text_append(rng: random.Random) -> Task:
    """Add a line at the end of a text file in Mousepad and save."""
    name, line = rng.choice(WORDS), f"{rng.choice(WORDS)}-{rng.randint(10, 99)}"
    path = f"{WS}/{name}.txt"
    setup = _text_file(path, rng)
    before = setup["parameters"]["files"][0]["content"]
    return {
        "instruction": f"In Mousepad, add the line {line} as the last line of {name}.txt, keep the other "
        "lines as they are, and save.",
        "config": [setup, {"type": "open", "parameters": {"path": path}}],
        "evaluator": _file_check(path, before + line),
        "oracle": [
            _focus("Mousepad"),
            {"do": "hotkey", "keys": ["ctrl", "end"]},
            {"do": "type", "text": line + "\n"},
            *_save_and_done(),
        ],
    }


def _sheet(path: str, values: list[int]) -> list[dict[str, Any]]:
    csv_path = path.rsplit(".", 1)[0] + ".csv"
    content = "\n".join(str(v) for v in values) + "\n"
    return [
        {"type": "upload_file", "parameters": {"files": [{"path": csv_path, "content": content}]}},
        {"type": "execute", "parameters": {"command": ["ssconvert", csv_path, path]}},
        {"type": "execute", "parameters": {"command": ["rm", csv_path]}},
        {"type": "open", "parameters": {"path": path}},
    ]


def _cells_check(path: str, cells: dict[str, str]) -> dict[str, Any]:
    return {
        "func": "check_cells",
        "result": {"type": "vm_spreadsheet_cells", "path": path},
        "expected": {"type": "rule", "rules": {"cells": cells}},
    }


def sheet_compute(rng: random.Random) -> Task:
    """Put a formula's result next to a column of numbers in Gnumeric and save."""
    values = [rng.randint(1, 99) for _ in range(rng.randint(3, 6))]
    name = rng.choice(WORDS)
    path, last = f"{WS}/{name}.gnumeric", len(values)
    how, func, result = rng.choice(
        [
            ("sum", "SUM", sum(values)),
            ("largest value", "MAX", max(values)),
            ("smallest value", "MIN", min(values)),
        ]
    )
    return {
        "instruction": f"In Gnumeric ({name}.gnumeric), put the {how} of A1:A{last} into cell B1 and save.",
        "config": _sheet(path, values),
        "evaluator": _cells_check(path, {"B1": str(result)}),
        "oracle": [
            _focus("Gnumeric"),
            {"do": "hotkey", "keys": ["ctrl", "home"]},
            {"do": "press", "key": "right"},
            {"do": "type", "text": f"={func}(A1:A{last})\n"},
            *_save_and_done(),
        ],
    }


def sheet_fill(rng: random.Random) -> Task:
    """Type a short column of values into Gnumeric and save."""
    values = [rng.randint(10, 500) for _ in range(3)]
    name = rng.choice(WORDS)
    path = f"{WS}/{name}.gnumeric"
    cells = {f"C{i}": str(v) for i, v in enumerate(values, start=1)}
    return {
        "instruction": f"In Gnumeric ({name}.gnumeric), enter {values[0]}, {values[1]} and {values[2]} into "
        "cells C1, C2 and C3 (one each, top to bottom) and save.",
        "config": _sheet(path, [rng.randint(1, 9) for _ in range(3)]),
        "evaluator": _cells_check(path, cells),
        "oracle": [
            _focus("Gnumeric"),
            {"do": "hotkey", "keys": ["ctrl", "home"]},
            {"do": "press", "key": "right"},
            {"do": "press", "key": "right"},
            {"do": "type", "text": "".join(f"{v}\n" for v in values)},
            *_save_and_done(),
        ],
    }


def files_rename(rng: random.Random) -> Task:
    """Rename a file with the file manager."""
    old, new = rng.sample(WORDS, 2)
    folder = f"{WS}/files"
    others = [w for w in rng.sample(WORDS, 3) if w not in (old, new)]
    files = [{"path": f"{folder}/{n}.txt", "content": f"{n}\n"} for n in [old, *others]]
    return {
        "instruction": f"Using the file manager, rename {old}.txt (in {folder}) to {new}.txt.",
        "config": [
            {"type": "upload_file", "parameters": {"files": files}},
            {"type": "open", "parameters": {"path": folder}},
        ],
        "evaluator": {
            "func": "check_dir",
            "result": {"type": "vm_dir_listing", "path": folder},
            "expected": {
                "type": "rule",
                "rules": {"present": [f"{new}.txt", *[f"{o}.txt" for o in others]], "absent": [f"{old}.txt"]},
            },
        },
        "oracle": [
            {"do": "click", "app": "Pcmanfm", "dx": 208 + 94 * sorted([old, *others]).index(old), "dy": 115},
            {"do": "wait", "seconds": 0.5},
            {"do": "press", "key": "f2"},
            {"do": "wait", "seconds": 1.0},
            {"do": "hotkey", "keys": ["ctrl", "a"]},
            {"do": "type", "text": f"{new}.txt\n"},
            {"do": "wait", "seconds": 1.0},
            {"do": "done"},
        ],
    }


def terminal_output(rng: random.Random) -> Task:
    """Run a command in the terminal and save its output to a file."""
    lines = rng.sample(WORDS, rng.randint(4, 8))
    name = rng.choice(["names", "words", "items", "list"])
    kind = rng.choice(["count", "sort"])
    if kind == "count":
        ask, command, want = (
            f"the number of lines in {name}.txt",
            f"cat {name}.txt | wc -l > result.txt",
            str(len(lines)),
        )
    else:
        ask, command, want = (
            f"the lines of {name}.txt sorted alphabetically",
            f"sort {name}.txt > result.txt",
            "\n".join(sorted(lines)),
        )
    return {
        "instruction": f"Using the terminal, save {ask} into result.txt in {WS}.",
        "config": [
            {
                "type": "upload_file",
                "parameters": {"files": [{"path": f"{WS}/{name}.txt", "content": "\n".join(lines) + "\n"}]},
            },
            {"type": "launch", "parameters": {"command": ["terminal"]}},
        ],
        "evaluator": _file_check(f"{WS}/result.txt", want),
        "oracle": [
            _focus("st-256color"),
            {"do": "type", "text": command + "\n"},
            {"do": "wait", "seconds": 1.0},
            {"do": "done"},
        ],
    }


def multi_app(rng: random.Random) -> Task:
    """Read a code in a text file (Mousepad) and enter it into a spreadsheet (Gnumeric)."""
    code = rng.randint(1000, 9999)
    sheet = f"{WS}/{rng.choice(WORDS)}.gnumeric"
    note = f"{WS}/code.txt"
    return {
        "instruction": f"code.txt (open in Mousepad) holds a number. Type that number into cell A1 of "
        f"{sheet.rsplit('/', 1)[1]} (open in Gnumeric) and save the spreadsheet.",
        "config": [
            {"type": "upload_file", "parameters": {"files": [{"path": note, "content": f"{code}\n"}]}},
            {"type": "open", "parameters": {"path": note}},
            *_sheet(sheet, [0, 0]),
        ],
        "evaluator": _cells_check(sheet, {"A1": str(code)}),
        "oracle": [
            _focus("Gnumeric"),
            {"do": "hotkey", "keys": ["ctrl", "home"]},
            {"do": "type", "text": f"{code}\n"},
            *_save_and_done(),
        ],
    }


IMPOSSIBLE = (
    "print {file} on the office printer",
    "email {file} to alice@example.com",
    "upload {file} to the team's cloud drive",
    "open {file} in Microsoft Word and export it as .docx",
    "video-call Bob and share {file} with him",
)


def infeasible(rng: random.Random) -> Task:
    """Something the desktop cannot do (no printer, network or such app): the right answer is `fail`."""
    path = f"{WS}/{rng.choice(WORDS)}.txt"
    ask = rng.choice(IMPOSSIBLE).format(file=path.rsplit("/", 1)[1])
    return {
        "instruction": f"Please {ask}.",
        "config": [_text_file(path, rng), {"type": "open", "parameters": {"path": path}}],
        "evaluator": {"func": "infeasible"},
        "oracle": [{"do": "fail", "reason": "this desktop has no printer, network or such application"}],
        "infeasible": True,
    }


FAMILIES: dict[str, Callable[[random.Random], Task]] = {
    "text_replace": text_replace,
    "text_append": text_append,
    "sheet_compute": sheet_compute,
    "sheet_fill": sheet_fill,
    "files_rename": files_rename,
    "terminal_output": terminal_output,
    "multi_app": multi_app,
    "infeasible": infeasible,
}


def generate(per_family: int, seed: int) -> Iterator[tuple[str, int, Task]]:
    """(family, index, task dict) for every family, `per_family` each, from one seed."""
    for family, make in FAMILIES.items():
        rng = random.Random(f"{seed}-{family}")
        for index in range(per_family):
            yield family, index, make(rng)
