"""The `str_replace_editor` tool coding agents know (view, create, str_replace, insert, undo_edit).

Every file operation goes through the sandbox API, so the editor works the same on every backend.
Agent mistakes raise `ToolError`, whose one-line message is the observation the agent sees;
infrastructure failures (`SandboxError`) propagate so the harness can tell the two apart.
"""

from __future__ import annotations

import difflib
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from orchard_envs.errors import ConfigError, OrchardError, PathEscapeError, SandboxFileNotFound
from orchard_envs.sandbox.base import Sandbox

__all__ = ["COMMANDS", "Editor", "ToolError"]

COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
MAX_OUTPUT = 16_000  # characters of view output before it is cut, so one call can't flood the context
SNIPPET_CONTEXT = 4  # lines shown around an edit
MAX_UNDO = 50  # saved versions per file; the oldest is dropped beyond this
MAX_LISTED_MATCHES = 20
PROBE_TIMEOUT = 30.0
FIND_TIMEOUT = 60.0


class ToolError(OrchardError):
    """An agent mistake with the tool; the message is shown to the agent as the observation."""


@dataclass(frozen=True)
class _Stat:
    """What the probe saw at a path (symlinks followed): 'file', 'dir' or 'other', and its mode bits."""

    kind: str
    mode: int


@dataclass(frozen=True)
class _Saved:
    """A file's state before an edit; `data` None means the file did not exist (undo deletes it)."""

    data: bytes | None
    mode: int = 0o644


@dataclass
class _Text:
    """A file's text with CRLF folded to LF, so agents can match lines as `view` shows them."""

    text: str
    crlf: bool
    mode: int
    raw: bytes

    @classmethod
    def decode(cls, data: bytes, mode: int, path: str) -> _Text:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(
                f"{path} is not UTF-8 text (binary?); the editor only handles text files"
            ) from None
        if "\0" in text:
            raise ToolError(f"{path} contains NUL bytes (binary?); the editor only handles text files")
        crlf = "\r\n" in text and text.count("\n") == text.count("\r\n")
        return cls(text.replace("\r\n", "\n") if crlf else text, crlf, mode, data)

    def encode(self, text: str) -> bytes:
        """`text` in the file's own line endings (a consistently CRLF file stays CRLF)."""
        return (text.replace("\n", "\r\n") if self.crlf else text).encode("utf-8")

    def agent_text(self, value: str) -> str:
        """An agent-supplied string in the same folded form as `self.text`."""
        return value.replace("\r\n", "\n") if self.crlf else value


class Editor:
    """View and edit text files inside one sandbox, remembering each file's versions for undo."""

    def __init__(self, sandbox: Sandbox, root: str) -> None:
        if not root.startswith("/"):
            raise ConfigError(f"editor root must be an absolute path, got {root!r}")
        self.sandbox = sandbox
        self.root = posixpath.normpath(root)
        self._history: dict[str, list[_Saved]] = {}

    # -- entry point -----------------------------------------------------------------------------
    def run(
        self,
        command: str,
        path: str,
        *,
        file_text: str | None = None,
        old_str: str | None = None,
        new_str: str | None = None,
        insert_line: int | None = None,
        view_range: list[int] | None = None,
    ) -> str:
        """Run one tool call and return its observation; ToolError for anything the agent got wrong."""
        handlers: dict[str, Callable[[], str]] = {
            "view": lambda: self.view(path, view_range),
            "create": lambda: self.create(path, file_text),
            "str_replace": lambda: self.str_replace(path, old_str, new_str),
            "insert": lambda: self.insert(path, insert_line, new_str),
            "undo_edit": lambda: self.undo_edit(path),
        }
        handler = handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            close = difflib.get_close_matches(str(command), COMMANDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ToolError(f"unknown command {command!r}{hint} use one of: {', '.join(COMMANDS)}")
        return handler()

    # -- commands --------------------------------------------------------------------------------
    def view(self, path: str, view_range: list[int] | None = None) -> str:
        """A file with `cat -n` numbering (optionally a line range), or a directory two levels deep."""
        target = self._resolve(path)
        stat = self._require_exists(target)
        if stat.kind == "dir":
            if view_range is not None:
                raise ToolError(f"{target} is a directory; view_range only applies to files, so leave it out")
            return self._view_dir(target)
        lines = _split_lines(self._read(target, stat).text)
        if view_range is None:
            return _cap(f"Here is the result of running `cat -n` on {target}:\n", lines, 1, len(lines))
        start, end, note = _check_range(view_range, len(lines), target)
        header = f"Here is the result of running `cat -n` on {target} (lines {start}-{end}):\n"
        return _cap(header, lines, start, end) + note

    def create(self, path: str, file_text: str | None) -> str:
        """Write a new file; refuses to overwrite, so an agent can't clobber work by mistake."""
        _require(file_text, "file_text", "create")
        target = self._resolve(path)
        stat = self._probe(target)
        if stat is not None:
            what = "a directory" if stat.kind == "dir" else "a file"
            raise ToolError(
                f"{target} already exists ({what}); view it, then change it with str_replace or insert"
            )
        self._write(target, file_text.encode("utf-8"), 0o644)
        self._remember(target, _Saved(None))
        return f"File created successfully at: {target}"

    def str_replace(self, path: str, old_str: str | None, new_str: str | None) -> str:
        """Replace the single occurrence of `old_str`; ambiguity or absence is the agent's to fix."""
        _require(old_str, "old_str", "str_replace")
        target = self._resolve(path)
        content = self._read(target, self._require_file(target))
        old, new = content.agent_text(old_str), content.agent_text(new_str or "")
        if not old:
            raise ToolError("old_str is empty; give the exact text to replace (to add text, use insert)")
        if old == new:
            raise ToolError("old_str and new_str are identical, so there is nothing to change")
        at = _unique_offset(content.text, old, target)
        edited = content.text[:at] + new + content.text[at + len(old) :]
        self._save_edit(target, content, edited)
        first = edited.count("\n", 0, at) + 1
        last = edited.count("\n", 0, at + max(len(new) - 1, 0)) + 1  # a final newline ends, not adds, a line
        return _edited(target, edited, first, last)

    def insert(self, path: str, insert_line: int | None, new_str: str | None) -> str:
        """Insert `new_str` as whole lines after line `insert_line` (0 puts them at the top)."""
        _require(insert_line, "insert_line", "insert")
        _require(new_str, "new_str", "insert")
        if isinstance(insert_line, bool) or not isinstance(insert_line, int):
            raise ToolError(f"insert_line must be an integer line number, got {insert_line!r}")
        target = self._resolve(path)
        content = self._read(target, self._require_file(target))
        lines = _split_lines(content.text)
        if not 0 <= insert_line <= len(lines):
            raise ToolError(
                f"insert_line {insert_line} is out of range: {target} has {len(lines)} lines, "
                f"so use 0 (top) to {len(lines)} (end)"
            )
        added = _split_lines(content.agent_text(new_str)) or [""]
        edited = _join_lines(
            lines[:insert_line] + added + lines[insert_line:], _ends_with_newline(content.text)
        )
        self._save_edit(target, content, edited)
        return _edited(target, edited, insert_line + 1, insert_line + len(added))

    def undo_edit(self, path: str) -> str:
        """Put back the file's state from before the last edit made through this editor."""
        target = self._resolve(path)
        stack = self._history.get(target)
        if not stack:
            raise ToolError(f"no edit history for {target}; undo_edit only reverts edits made with this tool")
        saved = stack[-1]
        if saved.data is None:
            self._delete(target)
            stack.pop()
            return f"Undid the creation of {target}; the file has been removed."
        self._write(target, saved.data, saved.mode)
        stack.pop()
        lines = _split_lines(_Text.decode(saved.data, saved.mode, target).text)
        return _cap(f"Last edit to {target} undone successfully. Its content now:\n", lines, 1, len(lines))

    # -- paths and probing -----------------------------------------------------------------------
    def _resolve(self, path: str) -> str:
        """Absolute paths as given (normalised); relative ones under root and not allowed to leave it."""
        if not isinstance(path, str) or not path.strip():
            raise ToolError("path is required: give the file or directory path, e.g. an absolute path")
        if path.startswith("/"):
            return posixpath.normpath(path)
        joined = posixpath.normpath(posixpath.join(self.root, path))
        if joined != self.root and not joined.startswith(self.root.rstrip("/") + "/"):
            raise ToolError(f"relative path {path!r} leaves {self.root}; use an absolute path instead")
        return joined

    def _probe(self, target: str) -> _Stat | None:
        """Stat `target` inside the sandbox (one fresh shell, leaving the agent's session alone)."""
        result = self.sandbox.exec(
            f"stat -L -c '%F|%a' -- {shlex.quote(target)}",
            timeout=PROBE_TIMEOUT,
            env={"LC_ALL": "C"},
            session=False,
        )
        if result.exit_code == 0:
            kind, _, mode = result.stdout.strip().rpartition("|")
            category = "file" if kind.startswith("regular") else "dir" if kind == "directory" else "other"
            return _Stat(category, int(mode, 8))
        reason = result.stderr.strip()
        if "No such file or directory" in reason:
            return None
        if "Not a directory" in reason:
            raise ToolError(f"cannot use {target}: one of its parent directories is a file")
        raise ToolError(f"cannot access {target}: {reason.splitlines()[-1] if reason else 'stat failed'}")

    def _require_exists(self, target: str) -> _Stat:
        stat = self._probe(target)
        if stat is None:
            raise ToolError(
                f"{target} does not exist; check the path (view a directory to see what is there)"
            )
        return stat

    def _require_file(self, target: str) -> _Stat:
        stat = self._require_exists(target)
        if stat.kind == "dir":
            raise ToolError(
                f"{target} is a directory; give a file path (view the directory to list its files)"
            )
        if stat.kind != "file":
            raise ToolError(f"{target} is not a regular file; the editor only handles text files")
        return stat

    # -- file access -----------------------------------------------------------------------------
    def _read(self, target: str, stat: _Stat) -> _Text:
        if stat.kind != "file":
            raise ToolError(f"{target} is not a regular file; the editor only handles text files")
        try:
            data = self.sandbox.read_file(target)
        except SandboxFileNotFound:
            raise ToolError(f"{target} does not exist; check the path") from None
        except PathEscapeError:
            raise ToolError(_outside(target)) from None
        return _Text.decode(data, stat.mode, target)

    def _write(self, target: str, data: bytes, mode: int) -> None:
        try:
            self.sandbox.write_file(target, data, mode)
        except PathEscapeError:
            raise ToolError(_outside(target)) from None

    def _delete(self, target: str) -> None:
        result = self.sandbox.exec(f"rm -f -- {shlex.quote(target)}", timeout=PROBE_TIMEOUT, session=False)
        if result.exit_code != 0:
            raise ToolError(f"cannot remove {target}: {result.stderr.strip() or 'rm failed'}")

    def _save_edit(self, target: str, before: _Text, edited: str) -> None:
        """Write the edited text in the file's own line endings and mode, remembering the old bytes."""
        self._write(target, before.encode(edited), before.mode)
        self._remember(target, _Saved(before.raw, before.mode))

    def _remember(self, target: str, saved: _Saved) -> None:
        stack = self._history.setdefault(target, [])
        stack.append(saved)
        del stack[:-MAX_UNDO]

    def _view_dir(self, target: str) -> str:
        """Non-hidden entries up to two levels down (directories end in '/'), sorted for stable output."""
        quoted = shlex.quote(target)
        command = (
            f"find -H {quoted} -mindepth 1 -maxdepth 2 \\( -name '.*' -o -name __pycache__ \\) -prune "
            "-o -type d -printf '%p/\\n' -o -print | LC_ALL=C sort"
        )
        result = self.sandbox.exec(command, timeout=FIND_TIMEOUT, session=False)
        header = (
            f"Here are the files and directories up to 2 levels deep in {target}, excluding hidden items:\n"
        )
        listing = result.stdout or "(no visible entries)\n"
        if len(listing) > MAX_OUTPUT:
            cut = listing.rfind("\n", 0, MAX_OUTPUT) + 1
            listing = listing[:cut] + "[listing truncated; view a subdirectory to see more]\n"
        return header + listing


# -- text helpers ----------------------------------------------------------------------------------
def _require(value: object, name: str, command: str) -> None:
    if value is None:
        raise ToolError(f"parameter {name!r} is required for the {command} command")


def _outside(target: str) -> str:
    return f"{target} is outside the sandbox areas the editor can reach; use the shell to work with it"


def _split_lines(text: str) -> list[str]:
    """Lines as `cat -n` counts them: a final newline ends the last line rather than starting one."""
    if not text:
        return []
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def _ends_with_newline(text: str) -> bool:
    """Whether a rebuilt file should end in a newline; an empty file gets one once it has lines."""
    return text.endswith("\n") or not text


def _join_lines(lines: list[str], trailing_newline: bool) -> str:
    return "\n".join(lines) + ("\n" if trailing_newline and lines else "")


def _numbered(lines: list[str], first: int) -> str:
    return "".join(f"{number:6}\t{line}\n" for number, line in enumerate(lines, start=first))


def _cap(header: str, lines: list[str], start: int, end: int) -> str:
    """`header` plus numbered lines start..end, cut at a line boundary once MAX_OUTPUT is reached."""
    if not lines:
        return header + "(the file is empty)\n"
    body, shown = [], start - 1
    size = len(header)
    for number in range(start, end + 1):
        row = f"{number:6}\t{lines[number - 1]}\n"
        if size + len(row) > MAX_OUTPUT and shown >= start:
            body.append(
                f"[output truncated after line {shown} of {len(lines)}; "
                f"use view_range, e.g. [{shown + 1}, {min(shown + 400, len(lines))}], to see more]\n"
            )
            break
        body.append(row)
        size += len(row)
        shown = number
    return header + "".join(body)


def _check_range(view_range: object, count: int, target: str) -> tuple[int, int, str]:
    """Validate a 1-based [start, end] (end -1 = last line); an end past the file is clamped with a note."""
    if (
        not isinstance(view_range, list | tuple)
        or len(view_range) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)
    ):
        raise ToolError(f"view_range must be two integers [start, end], got {view_range!r}")
    start, end = view_range
    if count == 0:
        raise ToolError(f"{target} is empty, so there are no lines to show; view it without view_range")
    if not 1 <= start <= count:
        raise ToolError(f"view_range start {start} is out of range: {target} has lines 1 to {count}")
    if end == -1:
        return start, count, ""
    if end < start:
        raise ToolError(
            f"view_range end {end} is before start {start}; use an end >= start, or -1 for the end"
        )
    if end > count:
        return start, count, f"[{target} has only {count} lines; showed up to line {count}]\n"
    return start, end, ""


def _occurrences(text: str, needle: str) -> list[int]:
    """Every offset of `needle`, overlapping ones included (so 'aa' is ambiguous in 'aaa')."""
    offsets, at = [], text.find(needle)
    while at != -1:
        offsets.append(at)
        at = text.find(needle, at + 1)
    return offsets


def _unique_offset(text: str, old: str, target: str) -> int:
    offsets = _occurrences(text, old)
    if len(offsets) == 1:
        return offsets[0]
    if not offsets:
        hint = ""
        if old.strip() and old.strip() != old and old.strip() in text:
            hint = " (it does occur if leading/trailing whitespace is ignored: check the ends of old_str)"
        raise ToolError(
            f"old_str was not found verbatim in {target}{hint}; it must match exactly, including "
            "whitespace and indentation, so view the file and copy the text"
        )
    numbers = sorted({text.count("\n", 0, at) + 1 for at in offsets})
    more = ", ..." if len(numbers) > MAX_LISTED_MATCHES else ""
    listed = ", ".join(map(str, numbers[:MAX_LISTED_MATCHES])) + more
    raise ToolError(
        f"old_str occurs {len(offsets)} times in {target} (starting on lines {listed}); "
        "include more surrounding lines so it matches exactly once"
    )


def _edited(target: str, text: str, first: int, last: int) -> str:
    """The confirmation plus a numbered snippet around lines first..last of the edited file."""
    lines = _split_lines(text)
    start = max(1, first - SNIPPET_CONTEXT)
    end = min(len(lines), last + SNIPPET_CONTEXT)
    header = f"The file {target} has been edited. Here is a snippet of the result (`cat -n` numbering):\n"
    return _cap(header, lines, start, end) + "Review the changes; edit again or use undo_edit if needed."
