"""Split a git diff by file and keep only what an agent may change: never tests, test config or hooks."""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

TEST_DIRS = {"test", "tests", "testing"}
TEST_FILES = ("test_*.py", "*_test.py", "*_tests.py", "tests.py", "conftest.py")
# Files that configure test runs or run code at interpreter start; restored to the instance's version.
CONFIG_FILES = ("pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "noxfile.py", ".coveragerc")
HOOK_FILES = ("sitecustomize.py", "usercustomize.py", "*.pth")


def is_protected(path: str) -> bool:
    """True for paths the grader restores: tests, test configuration, interpreter start-up hooks."""
    pure = PurePosixPath(path)
    if TEST_DIRS.intersection(pure.parts[:-1]):
        return True
    return any(fnmatch.fnmatch(pure.name, pattern) for pattern in (*TEST_FILES, *CONFIG_FILES, *HOOK_FILES))


def _unquote(path: str) -> str:
    """git quotes unusual paths C-style ("a/caf\\303\\251.py")."""
    if not (path.startswith('"') and path.endswith('"')):
        return path
    raw = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1").decode("utf-8", "replace")


def _strip_prefix(path: str) -> str:
    path = _unquote(path.strip())
    return path[2:] if path[:2] in ("a/", "b/") else path


def file_sections(patch: str) -> list[tuple[set[str], str]]:
    """The per-file sections of a git diff, each with every path it touches (old and new names)."""
    sections: list[tuple[set[str], str]] = []
    for chunk in re.split(r"(?m)^(?=diff --git )", patch):
        if not chunk.startswith("diff --git "):
            continue
        paths: set[str] = set()
        for line in chunk.splitlines():
            if line.startswith(("--- ", "+++ ")) and line[4:].strip() != "/dev/null":
                paths.add(_strip_prefix(line[4:].split("\t")[0]))
            elif line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
                paths.add(_unquote(line.split(" ", 2)[2]))
            elif line.startswith("@@"):
                break
        if not paths:  # mode-only or binary change: the header names the file
            header = chunk.splitlines()[0][len("diff --git ") :]
            paths.add(_strip_prefix(header.split(" b/")[-1] if " b/" in header else header))
        sections.append((paths, chunk))
    return sections


def touched_files(patch: str) -> set[str]:
    return set().union(*(paths for paths, _ in file_sections(patch))) if patch.strip() else set()


def split_patch(patch: str, also_protected: set[str] = frozenset()) -> tuple[str, list[str]]:
    """(the agent patch without protected files, the sorted protected paths it tried to change)."""
    kept, dropped = [], set()
    for paths, chunk in file_sections(patch):
        hit = {p for p in paths if is_protected(p) or p in also_protected}
        if hit:
            dropped |= hit
        else:
            kept.append(chunk if chunk.endswith("\n") else chunk + "\n")
    return "".join(kept), sorted(dropped)
