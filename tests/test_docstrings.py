"""Docstring coverage of the public code stays at 90% or more (scripts/docstring_coverage.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "docstring_coverage.py"


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd)


def test_public_code_is_at_least_90_percent_documented():
    result = _run("90", "--list")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "docstring coverage:" in result.stdout


def test_the_script_fails_below_its_threshold(tmp_path):
    """The count itself: private names, private modules, nested functions and overloads are left out."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import docstring_coverage as coverage
    finally:
        sys.path.remove(str(SCRIPT.parent))
    source = (
        "from typing import overload\n"
        "class Shown:\n"
        "    '''Documented.'''\n"
        "    def method(self): pass\n"
        "    def _hidden(self): pass\n"
        "    class _Inner:\n"
        "        def skipped(self): pass\n"
        "def documented():\n"
        "    '''Yes.'''\n"
        "    def nested(): pass\n"
        "@overload\n"
        "def twin(x: int) -> int: ...\n"
        "def twin(x):\n"
        "    '''Implementation.'''\n"
    )
    found = coverage.public_defs(ast.parse(source))
    assert [(name, has_doc) for name, _, has_doc in found] == [
        ("Shown", True),
        ("Shown.method", False),
        ("documented", True),
        ("twin", True),
    ]
    assert coverage.public_module(Path("__init__.py"))
    assert not coverage.public_module(Path("_private.py"))
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "mod.py").write_text("def bare(): pass\n")
    assert coverage.measure(tmp_path)[:2] == (0, 1)
    assert coverage.main(["50"]) == 0  # the real tree
    assert coverage.main(["100.1"]) == 1
