"""Measure the share of public functions, methods and classes that carry a docstring.

An AST count over the code folders (not tests/, benchmarks/, scripts/): a definition is public when
its name and every enclosing class name do not start with `_`, and it lives in a module whose name
does not start with `_` (``__init__`` counts as public). Functions nested in functions are private by
construction and not counted, nor are ``@overload`` stubs. Exits 1 when the percentage is below
the threshold given as argument.

Usage: python scripts/docstring_coverage.py [THRESHOLD] [--list]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("orchard_envs", "agents", "harnesses", "trainers", "leaderboard", "tasks")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def public_module(path: Path) -> bool:
    """Private modules (``_x.py``) are skipped, but ``__init__.py`` is a package's public face."""
    return path.stem == "__init__" or not path.stem.startswith("_")


def _is_overload(node: ast.stmt) -> bool:
    """`@overload` stubs share the implementation's docstring (ruff's pydocstyle skips them too)."""
    decorators = getattr(node, "decorator_list", [])
    return any(ast.unparse(d).split(".")[-1] == "overload" for d in decorators)


def public_defs(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(qualified name, line, has docstring) for each public def, descending into public classes only."""
    found: list[tuple[str, int, bool]] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, _DEFS) or node.name.startswith("_") or _is_overload(node):
                continue
            found.append((prefix + node.name, node.lineno, ast.get_docstring(node) is not None))
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(getattr(tree, "body", []), "")
    return found


def measure(root: Path = ROOT) -> tuple[int, int, list[str]]:
    """Return (documented, total, missing locations) over the code folders under `root`."""
    documented = total = 0
    missing: list[str] = []
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            if not public_module(path):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name, line, has_doc in public_defs(tree):
                total += 1
                documented += has_doc
                if not has_doc:
                    missing.append(f"{path.relative_to(root)}:{line}: {name}")
    return documented, total, missing


def main(argv: list[str]) -> int:
    """Print the coverage; return 1 when it is below the threshold (default 0)."""
    args = [a for a in argv if a != "--list"]
    threshold = float(args[0]) if args else 0.0
    documented, total, missing = measure()
    if "--list" in argv:
        print("\n".join(missing))
    percent = 100.0 * documented / total if total else 100.0
    print(f"docstring coverage: {documented}/{total} public definitions = {percent:.1f}%")
    if percent < threshold:
        print(f"below the threshold of {threshold:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
