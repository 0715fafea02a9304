"""Bug injection for SWE-smith-style task building: small, realistic AST mutations of a library file.

`find_mutations` proposes every site where one operator can inject a bug inside a function body;
`sample_mutations` picks a seeded, operator-balanced subset. Each `Mutation` is one minimal text edit
(`source[start:end]` -> `replacement`), so the rest of the file stays byte-identical and the gold patch
that undoes it is a one-hunk diff. A later stage writes the mutant, runs the tests and keeps the mutants
that break a few of them.

Every proposed mutant is checked here: it must compile and its AST must differ from the original's.
"""

from __future__ import annotations

import ast
import bisect
import random
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

OPERATORS: tuple[str, ...] = (
    "flip_comparison",
    "off_by_one",
    "swap_arguments",
    "remove_statement",
    "remove_branch",
    "invert_condition",
    "swap_bool_operator",
    "swap_arithmetic",
)


@dataclass(frozen=True)
class Mutation:
    """One injected bug: replace `source[start:end]` (character offsets) with `replacement`."""

    path: str
    operator: str
    lineno: int
    start: int
    end: int
    replacement: str
    description: str
    function: str

    def apply(self, source: str) -> str:
        """The mutant: the original text with only the span [start, end) replaced."""
        return source[: self.start] + self.replacement + source[self.end :]


# --- source positions -------------------------------------------------------------------------------

# Python's tokenizer ends a line at \r\n, \r or \n (not at \f or the other characters str.splitlines knows).
_NEWLINE = re.compile(r"\r\n|\r|\n")


class _Text:
    """The source with a line index; turns the AST's (line, UTF-8 byte column) into character offsets."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.line_starts = [0] + [m.end() for m in _NEWLINE.finditer(source)]

    def line_start(self, lineno: int) -> int:
        return self.line_starts[lineno - 1]

    def line_end(self, lineno: int) -> int:
        """Offset just past line `lineno` including its newline (or the end of the file)."""
        return self.line_starts[lineno] if lineno < len(self.line_starts) else len(self.source)

    def offset(self, lineno: int, col: int) -> int:
        start = self.line_start(lineno)
        line = self.source[start : self.line_end(lineno)]
        if line.isascii():
            return start + col
        return start + len(line.encode("utf-8")[:col].decode("utf-8"))

    def lineno_at(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)
        return start, self.offset(node.end_lineno, node.end_col_offset)

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.source[start:end]

    def owns_lines(self, node: ast.stmt) -> bool:
        """True when nothing but indentation precedes the statement and only a comment follows it."""
        start, end = self.span(node)
        before = self.source[self.line_start(node.lineno) : start]
        after = self.source[end : self.line_end(node.end_lineno)]
        return not before.strip() and re.fullmatch(r"[ \t\f]*(#.*)?\s*", after) is not None

    def token_after(self, node: ast.AST, limit: ast.AST, pattern: re.Pattern[str]) -> tuple[int, int] | None:
        """The operator token between two operands: skip closing parens, blanks, comments, continuations."""
        pos, stop = self.span(node)[1], self.span(limit)[0]
        src = self.source
        while pos < stop:
            if src[pos] in " \t\f\r\n)\\":
                pos += 1
            elif src[pos] == "#":
                nl = _NEWLINE.search(src, pos, stop)
                pos = nl.end() if nl else stop
            else:
                break
        match = pattern.match(src, pos, stop)
        return (match.start(), match.end()) if match else None


def _snippet(text: str, limit: int = 40) -> str:
    """One-line, shortened source text for descriptions."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- walking the function bodies ----------------------------------------------------------------------

_NodePath = tuple[tuple[str, int | None], ...]  # (field, index) steps from the module to a node


@dataclass(frozen=True)
class _Scope:
    prefix: tuple[str, ...] = ()  # enclosing class/function names
    function: str = ""  # qualified name of the innermost function; "" outside functions
    function_path: _NodePath = ()


@dataclass(frozen=True)
class _Site:
    node: ast.AST
    scope: _Scope
    siblings: list[ast.stmt] | None  # the statement list holding `node`, when it is a statement


_LOG_ROOTS = frozenset({"logging", "warnings"})
_LOGGER_NAMES = frozenset({"log", "logger", "_log", "_logger", "LOG", "LOGGER", "logging"})
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
_LEAF_TYPES = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)


def _dotted(node: ast.expr) -> list[str]:
    """`a.b.c` -> ["a", "b", "c"]; [] for anything that is not a plain dotted name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    return [node.id, *reversed(parts)]


def _is_log_call(node: ast.Call) -> bool:
    """logging/warnings calls only change diagnostics: bugs there rarely break tests."""
    parts = _dotted(node.func)
    if not parts:
        return False
    if parts[0] in _LOG_ROOTS or parts == ["warn"]:
        return True
    return parts[-1] in _LOG_METHODS and any(part in _LOGGER_NAMES for part in parts[:-1])


def _is_guard(test: ast.expr) -> bool:
    """`if TYPE_CHECKING` and `if __name__ == "__main__"` guard code that tests never run."""
    if _dotted(test)[-1:] == ["TYPE_CHECKING"]:
        return True
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        pair = (test.left, test.comparators[0])
        has_name = any(isinstance(n, ast.Name) and n.id == "__name__" for n in pair)
        return has_name and any(isinstance(n, ast.Constant) and n.value == "__main__" for n in pair)
    return False


def _is_excluded(node: ast.AST) -> bool:
    """Subtrees never mutated: asserts, guards, diagnostics, f-strings (positions inside are unreliable)."""
    if isinstance(node, ast.Assert | ast.JoinedStr):
        return True
    if isinstance(node, ast.If):
        return _is_guard(node.test)
    if isinstance(node, ast.Call):
        return _is_log_call(node)
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "__repr__"


def _without_docstring(body: list[ast.stmt]) -> list[tuple[int, ast.stmt]]:
    items = list(enumerate(body))
    first = body[0] if body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    return items[1:] if is_doc and isinstance(first.value.value, str) else items


_Child = tuple[ast.AST, _Scope, _NodePath, list | None]  # node, scope, path, sibling statements


def _children(node: ast.AST, scope: _Scope, path: _NodePath) -> Iterator[_Child]:
    """Child nodes to visit, with their scope; skips decorators, defaults, annotations and docstrings."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        names = (*scope.prefix, node.name)
        inner = _Scope(names, ".".join(names), path)
        for i, stmt in _without_docstring(node.body):
            yield stmt, inner, (*path, ("body", i)), node.body
        return
    if isinstance(node, ast.ClassDef | ast.Module):
        if isinstance(node, ast.ClassDef):
            scope = _Scope((*scope.prefix, node.name), scope.function, scope.function_path)
        for i, stmt in _without_docstring(node.body):
            yield stmt, scope, (*path, ("body", i)), node.body
        return
    for field, value in ast.iter_fields(node):
        if isinstance(node, ast.Lambda) and field == "args":
            continue
        if isinstance(node, ast.AnnAssign) and field == "annotation":
            continue
        if isinstance(value, list):
            siblings = value if value and isinstance(value[0], ast.stmt) else None
            for i, child in enumerate(value):
                if isinstance(child, ast.AST) and not isinstance(child, _LEAF_TYPES):
                    yield child, scope, (*path, (field, i)), siblings
        elif isinstance(value, ast.AST) and not isinstance(value, _LEAF_TYPES):
            yield value, scope, (*path, (field, None)), None


def _sites(tree: ast.Module) -> Iterator[_Site]:
    """Every node inside a function body that is not in an excluded subtree (iterative: no recursion cap)."""
    stack: list[_Child] = [(tree, _Scope(), (), None)]
    while stack:
        node, scope, path, siblings = stack.pop()
        if scope.function:
            yield _Site(node, scope, siblings)
        children = [c for c in _children(node, scope, path) if not _is_excluded(c[0])]
        stack.extend(reversed(children))


# --- operators ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    operator: str
    start: int
    end: int
    replacement: str
    description: str


_COMPARE_TOKEN = re.compile(r"<=|>=|==|!=|<|>|is(?:\s+not)?\b|not\s+in\b|in\b")
_COMPARE_TEXT = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip
_COMPARE_FLIP = {
    "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
    "is": "is not", "is not": "is", "in": "not in", "not in": "in",
}  # fmt: skip
_BOOL_TOKEN = re.compile(r"(?:and|or)\b")
_ARITH_TOKEN = re.compile(r"\*\*=?|//=?|[-+*/%@&|^]=?|<<=?|>>=?")
_ARITH_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_ARITH_FLIP = {"+": "-", "-": "+", "*": "/", "/": "*"}
_ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)


def _flip_comparison(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.Compare):
        return
    operands = [node.left, *node.comparators]
    for i, op in enumerate(node.ops):
        found = text.token_after(operands[i], operands[i + 1], _COMPARE_TOKEN)
        expected = _COMPARE_TEXT[type(op)]
        if found is None or " ".join(text.source[found[0] : found[1]].split()) != expected:
            continue
        new = _COMPARE_FLIP[expected]
        yield _Edit("flip_comparison", *found, new, f"flip comparison '{expected}' to '{new}'")


def _format_int(value: int, like: str) -> str:
    """Write `value` in the base the original literal used (0x10 -> 0x11), else in decimal."""
    prefix = like[:2].lower()
    formats = {"0x": "#x", "0o": "#o", "0b": "#b"}
    return format(value, formats[prefix]) if prefix in formats and value >= 0 else str(value)


def _off_by_one(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.Constant) or type(node.value) is not int:
        return
    start, end = text.span(node)
    old = text.source[start:end]
    for new_value in (node.value + 1, node.value - 1) if node.value > 0 else (node.value + 1,):
        new = _format_int(new_value, old)
        yield _Edit("off_by_one", start, end, new, f"change literal {old} to {new}")


def _swap_arguments(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        return
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        return
    (start, first_end), (second_start, end) = text.span(node.args[0]), text.span(node.args[1])
    first, second = text.source[start:first_end], text.source[second_start:end]
    if first.strip() == second.strip():
        return
    between = text.source[first_end:second_start]
    callee = _snippet(text.segment(node.func), 30)
    description = f"swap arguments '{_snippet(first, 20)}' and '{_snippet(second, 20)}' of '{callee}'"
    yield _Edit("swap_arguments", start, end, second + between + first, description)


def _removable(text: _Text, site: _Site) -> bool:
    """A statement can go when it owns its lines and its body keeps another statement (no `pass` needed)."""
    return bool(site.siblings) and len(site.siblings) >= 2 and text.owns_lines(site.node)


def _whole_lines(text: _Text, node: ast.stmt) -> tuple[int, int, str]:
    """Delete the statement's lines: indentation, all continuation lines, trailing comment, newline."""
    return text.line_start(node.lineno), text.line_end(node.end_lineno), ""


def _remove_statement(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.Assign | ast.AugAssign | ast.Expr):
        return
    if isinstance(node, ast.Expr):
        call = node.value.value if isinstance(node.value, ast.Await) else node.value
        if not isinstance(call, ast.Call) or _is_log_call(call):
            return
    if _removable(text, site):
        description = f"remove statement '{_snippet(text.segment(node))}'"
        yield _Edit("remove_statement", *_whole_lines(text, node), description)


_ELSE_LINE = re.compile(r"[ \t\f]*(else|elif)\b")


def _remove_branch(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.If):
        return
    condition = _snippet(text.segment(node.test), 30)
    if node.orelse:
        for lineno in range(node.body[-1].end_lineno + 1, node.orelse[0].lineno + 1):
            match = _ELSE_LINE.match(text.source, text.line_start(lineno), text.line_end(lineno))
            if match:
                start, end = text.line_start(lineno), text.line_end(node.orelse[-1].end_lineno)
                yield _Edit("remove_branch", start, end, "", f"remove {match[1]} branch of 'if {condition}'")
                return
    elif _removable(text, site):
        yield _Edit("remove_branch", *_whole_lines(text, node), f"remove 'if {condition}' block")


def _invert_condition(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.If | ast.While | ast.IfExp):
        return
    test = node.test
    start, end = text.span(test)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        operand = text.segment(test.operand)
        bare = not isinstance(test.operand, ast.IfExp | ast.Lambda | ast.NamedExpr)
        new = operand if bare else f"({operand})"
    else:
        segment = text.source[start:end]
        new = f"not {segment}" if isinstance(test, _ATOMS) else f"not ({segment})"
    keyword = {ast.If: "if", ast.While: "while", ast.IfExp: "conditional expression"}[type(node)]
    description = f"invert condition '{_snippet(text.segment(test), 30)}' of {keyword}"
    yield _Edit("invert_condition", start, end, new, description)


def _swap_bool_operator(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if not isinstance(node, ast.BoolOp):
        return
    old = "and" if isinstance(node.op, ast.And) else "or"
    new = "or" if old == "and" else "and"
    for left, right in zip(node.values, node.values[1:], strict=False):
        found = text.token_after(left, right, _BOOL_TOKEN)
        if found and text.source[found[0] : found[1]] == old:
            yield _Edit("swap_bool_operator", *found, new, f"swap '{old}' to '{new}'")


def _is_text_literal(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
    )


def _swap_arithmetic(site: _Site, text: _Text) -> Iterator[_Edit]:
    node = site.node
    if isinstance(node, ast.BinOp):
        left, right, suffix = node.left, node.right, ""
    elif isinstance(node, ast.AugAssign):
        left, right, suffix = node.target, node.value, "="
    else:
        return
    expected = _ARITH_TEXT.get(type(node.op))
    if expected is None or _is_text_literal(left) or _is_text_literal(right):
        return
    found = text.token_after(left, right, _ARITH_TOKEN)
    if found is None or text.source[found[0] : found[1]] != expected + suffix:
        return
    new = _ARITH_FLIP[expected] + suffix
    yield _Edit("swap_arithmetic", *found, new, f"swap arithmetic '{expected}{suffix}' to '{new}'")


_OPERATOR_FUNCS = (
    _flip_comparison,
    _off_by_one,
    _swap_arguments,
    _remove_statement,
    _remove_branch,
    _invert_condition,
    _swap_bool_operator,
    _swap_arithmetic,
)


# --- validation and the public API --------------------------------------------------------------------


class _Checker:
    """Accepts a mutant only if it compiles and the mutated function's AST differs from the original."""

    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.dumps: dict[_NodePath, str] = {}

    @staticmethod
    def _node_at(tree: ast.AST, path: _NodePath) -> ast.AST:
        node = tree
        for field, index in path:
            value = getattr(node, field)
            node = value if index is None else value[index]
        return node

    def accepts(self, mutant: str, function_path: _NodePath) -> bool:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                new_tree = ast.parse(mutant, self.path)
                compile(new_tree, self.path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError):
            return False
        if function_path not in self.dumps:
            self.dumps[function_path] = ast.dump(self._node_at(self.tree, function_path))
        try:
            new_dump = ast.dump(self._node_at(new_tree, function_path))
        except (AttributeError, IndexError):
            return ast.dump(new_tree) != ast.dump(self.tree)
        return new_dump != self.dumps[function_path]


def find_mutations(source: str, path: str = "<string>") -> list[Mutation]:
    """Every valid mutation site inside function bodies, sorted by position then operator.

    Raises SyntaxError (or ValueError) when `source` itself does not parse.
    """
    tree = ast.parse(source, path)
    text = _Text(source)
    checker = _Checker(tree, path)
    found: dict[tuple[str, int, int, str], Mutation] = {}
    for site in _sites(tree):
        for operator in _OPERATOR_FUNCS:
            for edit in operator(site, text):
                key = (edit.operator, edit.start, edit.end, edit.replacement)
                if key in found:
                    continue
                mutation = Mutation(
                    path=path,
                    operator=edit.operator,
                    lineno=text.lineno_at(edit.start),
                    start=edit.start,
                    end=edit.end,
                    replacement=edit.replacement,
                    description=f"{edit.description} in function '{site.scope.function}'",
                    function=site.scope.function,
                )
                if checker.accepts(mutation.apply(source), site.scope.function_path):
                    found[key] = mutation
    order = {name: i for i, name in enumerate(OPERATORS)}
    return sorted(found.values(), key=lambda m: (m.start, m.end, order[m.operator], m.replacement))


def _round_robin(groups: list[list[Mutation]]) -> list[Mutation]:
    """Interleave the groups: first of each, then second of each, ..."""
    merged: list[Mutation] = []
    for depth in range(max((len(g) for g in groups), default=0)):
        merged.extend(group[depth] for group in groups if depth < len(group))
    return merged


def _spread_over_functions(mutations: list[Mutation], rng: random.Random) -> list[Mutation]:
    """Shuffle one operator's mutations so that consecutive picks come from different functions."""
    by_function: dict[str, list[Mutation]] = {}
    for mutation in mutations:
        by_function.setdefault(mutation.function, []).append(mutation)
    groups = [by_function[name] for name in sorted(by_function)]
    rng.shuffle(groups)
    for group in groups:
        rng.shuffle(group)
    return _round_robin(groups)


def sample_mutations(mutations: list[Mutation], rng: random.Random, limit: int) -> list[Mutation]:
    """At most `limit` mutations, round-robin over operators (then functions) so none dominates.

    Deterministic for a given rng state and input order.
    """
    if limit <= 0:
        return []
    by_operator: dict[str, list[Mutation]] = {}
    for mutation in mutations:
        by_operator.setdefault(mutation.operator, []).append(mutation)
    names = sorted(by_operator)  # input order must not matter, only the rng
    rng.shuffle(names)
    groups = [_spread_over_functions(by_operator[name], rng) for name in names]
    return _round_robin(groups)[:limit]
