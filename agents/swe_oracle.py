"""The SWE oracle: replays a gold patch through the `str_replace_editor` tool, then submits.

It proves an instance is solvable through the env's own tools (not just by `git apply`).
"""

from __future__ import annotations

import json
import re

from orchard_envs.tasks.swe.patches import file_sections

HUNK = re.compile(r"(?m)^@@ [^@]* @@.*\n")


def _hunk_blocks(hunk: str) -> tuple[str, str]:
    """(old text, new text) of one hunk body, honouring "\\ No newline at end of file" markers."""
    old: list[str] = []
    new: list[str] = []
    last: tuple[list[str], ...] = ()
    for line in hunk.splitlines():
        kind, text = line[:1], line[1:] + "\n"
        if kind == "\\":
            for block in last:
                block[-1] = block[-1].removesuffix("\n")
            continue
        last = {" ": (old, new), "-": (old,), "+": (new,)}.get(kind, ())
        for block in last:
            block.append(text)
    return "".join(old), "".join(new)


def _target(section: str, marker: str) -> str | None:
    match = re.search(rf"(?m)^{re.escape(marker)} (?:[ab]/)?(.+?)\t?$", section)
    return None if match is None or match.group(1) == "/dev/null" else match.group(1)


def gold_patch_actions(patch: str) -> list[dict]:
    """Tool calls that turn the base tree into the gold-patched tree, then `submit`."""
    actions: list[dict] = []
    for _, section in file_sections(patch):
        old_path, new_path = _target(section, "---"), _target(section, "+++")
        body = HUNK.split(section)[1:]
        if old_path is None and new_path is not None:
            text = "".join(_hunk_blocks(h)[1] for h in body)
            actions.append(_editor("create", new_path, file_text=text))
        elif new_path is None and old_path is not None:
            actions.append({"name": "bash", "arguments": {"command": f"rm -f -- {json.dumps(old_path)}"}})
        else:
            for hunk in body:
                old, new = _hunk_blocks(hunk)
                actions.append(_editor("str_replace", str(new_path), old_str=old, new_str=new))
    return [*actions, {"name": "submit", "arguments": {}}]


def _editor(command: str, path: str, **arguments: str) -> dict:
    return {"name": "str_replace_editor", "arguments": {"command": command, "path": path, **arguments}}


def bash_patch_actions(patch: str) -> list[dict]:
    """The gold patch through `bash` alone (for harnesses that offer no editor), then `submit`."""
    delimiter = "ORCHARD_GOLD_PATCH"
    while delimiter in patch:
        delimiter += "_"
    body = patch if patch.endswith("\n") else patch + "\n"
    command = f"git apply --whitespace=nowarn <<'{delimiter}'\n{body}{delimiter}"
    return [{"name": "bash", "arguments": {"command": command}}, {"name": "submit", "arguments": {}}]


def plan(task, tool_names: list[str]) -> list[dict]:
    """The oracle's actions for an SWE task with whichever tools the harness offers."""
    if "str_replace_editor" in tool_names:
        return gold_patch_actions(task.patch)
    return bash_patch_actions(task.patch)
