"""The str_replace_editor tool against a real (local, bubblewrap) sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchard_envs.envs.editor import MAX_OUTPUT, Editor, ToolError
from orchard_envs.errors import ConfigError, OrchardError, SandboxClosed
from orchard_envs.sandbox import Sandbox, SandboxSpec

ROOT = "/workspace/repo"


@pytest.fixture
def sb(local_backend) -> Iterator[Sandbox]:
    sandbox = local_backend.create(SandboxSpec())
    yield sandbox
    sandbox.close()


@pytest.fixture
def editor(sb) -> Editor:
    return Editor(sb, ROOT)


@pytest.fixture(scope="module")
def shared_sandbox(local_backend) -> Iterator[Sandbox]:
    """One sandbox for the property test, whose examples each use a fresh file and editor."""
    sandbox = local_backend.create(SandboxSpec())
    yield sandbox
    sandbox.close()


def put(sb: Sandbox, name: str, data: bytes | str, mode: int = 0o644) -> str:
    path = f"{ROOT}/{name}"
    sb.write_file(path, data, mode)
    return path


def numbered(*lines: str, first: int = 1) -> str:
    return "".join(f"{n:6}\t{line}\n" for n, line in enumerate(lines, start=first))


def fails(editor: Editor, *args: object, **kwargs: object) -> str:
    """The ToolError message of a call that must fail; also checks it is one line."""
    with pytest.raises(ToolError) as info:
        editor.run(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- view -----------------------------------------------------------------------------------------
def test_view_file_is_numbered_like_cat_n(sb, editor):
    path = put(sb, "a.py", "import os\n\tx = 1\n")
    out = editor.run("view", path)
    assert out == f"Here is the result of running `cat -n` on {path}:\n" + numbered("import os", "\tx = 1")


def test_view_relative_path_resolves_against_root(sb, editor):
    put(sb, "pkg/mod.py", "x = 1\n")
    assert numbered("x = 1") in editor.run("view", "pkg/mod.py")
    assert numbered("x = 1") in editor.run("view", "./pkg/../pkg/mod.py")


def test_view_range_selects_lines(sb, editor):
    path = put(sb, "r.txt", "".join(f"line {i}\n" for i in range(1, 11)))
    out = editor.run("view", path, view_range=[3, 5])
    assert out.endswith(numbered("line 3", "line 4", "line 5", first=3))
    assert "line 2" not in out and "line 6" not in out


def test_view_range_edge_cases(sb, editor):
    path = put(sb, "r.txt", "a\nb\nc")  # no trailing newline: still three lines
    assert editor.run("view", path, view_range=[3, -1]).endswith(numbered("c", first=3))
    assert editor.run("view", path, view_range=[1, 1]).endswith(numbered("a"))
    assert editor.run("view", path, view_range=[2, 3]).endswith(numbered("b", "c", first=2))
    clamped = editor.run("view", path, view_range=[2, 99])
    assert numbered("b", "c", first=2) in clamped and "has only 3 lines" in clamped


@pytest.mark.parametrize(
    ("view_range", "expected"),
    [
        ([0, 2], "start 0 is out of range"),
        ([4, -1], "start 4 is out of range"),
        ([-1, 2], "start -1 is out of range"),
        ([3, 2], "before start"),
        ([1], "two integers"),
        ([1, 2, 3], "two integers"),
        (["1", "2"], "two integers"),
        ([True, 2], "two integers"),
        ("1,2", "two integers"),
    ],
)
def test_view_range_errors(sb, editor, view_range, expected):
    path = put(sb, "r.txt", "a\nb\nc\n")
    assert expected in fails(editor, "view", path, view_range=view_range)


def test_view_empty_file(sb, editor):
    path = put(sb, "empty.txt", "")
    assert "(the file is empty)" in editor.run("view", path)
    assert "is empty" in fails(editor, "view", path, view_range=[1, -1])


def test_view_long_file_is_capped_with_a_hint(sb, editor):
    path = put(sb, "big.txt", "".join(f"{'x' * 70} {i}\n" for i in range(1, 2001)))
    out = editor.run("view", path)
    assert len(out) <= MAX_OUTPUT + 200
    assert "output truncated after line" in out and "view_range" in out
    shown = int(out.split("truncated after line ")[1].split(" ")[0])
    assert out.count("\n") == shown + 2  # header, the lines, the note
    assert f"[{shown + 1}, " in out
    assert editor.run("view", path, view_range=[1990, -1]).endswith(f"{'x' * 70} 2000\n")


def test_view_directory_lists_two_levels_without_hidden(sb, editor):
    for name in ["a.py", "pkg/b.py", "pkg/deep/c.py", ".git/config", "pkg/.hidden", "__pycache__/x.pyc",
                 "pkg/__pycache__/y.pyc"]:
        put(sb, name, "x\n")
    out = editor.run("view", ROOT)
    listing = out.splitlines()[1:]
    assert listing == [f"{ROOT}/a.py", f"{ROOT}/pkg/", f"{ROOT}/pkg/b.py", f"{ROOT}/pkg/deep/"]
    assert editor.run("view", ".") == out


def test_view_empty_directory(sb, editor):
    sb.exec(f"mkdir -p {ROOT}/empty")
    assert "(no visible entries)" in editor.run("view", "empty")


def test_view_errors(sb, editor):
    assert "does not exist" in fails(editor, "view", "missing.py")
    put(sb, "bin.dat", b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert "not UTF-8" in fails(editor, "view", "bin.dat")
    put(sb, "nul.txt", b"abc\x00def\n")
    assert "NUL" in fails(editor, "view", "nul.txt")
    put(sb, "plain", "x\n")
    assert "parent directories is a file" in fails(editor, "view", "plain/below")
    assert "directory" in fails(editor, "view", ROOT, view_range=[1, 2])


def test_view_outside_writable_areas_is_a_tool_error(editor):
    assert "outside" in fails(editor, "view", "/etc/passwd")


def test_view_of_a_fifo_is_refused(sb, editor):
    sb.exec(f"mkdir -p {ROOT} && mkfifo {ROOT}/pipe")
    assert "not a regular file" in fails(editor, "view", "pipe")


# -- create ---------------------------------------------------------------------------------------
def test_create_writes_file_and_parent_dirs(sb, editor):
    out = editor.run("create", "new/dir/f.py", file_text="print('hi')\n")
    assert out == f"File created successfully at: {ROOT}/new/dir/f.py"
    assert sb.read_file(f"{ROOT}/new/dir/f.py") == b"print('hi')\n"


def test_create_keeps_text_exact(sb, editor):
    text = "\tTabs\r\nand CRLF\r\nno final newline ünï©ødé 🌳"
    editor.run("create", "exact.txt", file_text=text)
    assert sb.read_file(f"{ROOT}/exact.txt") == text.encode()
    editor.run("create", "empty.txt", file_text="")
    assert sb.read_file(f"{ROOT}/empty.txt") == b""


def test_create_refuses_existing_paths(sb, editor):
    put(sb, "here.py", "keep\n")
    assert "already exists" in fails(editor, "create", "here.py", file_text="x")
    assert "str_replace" in fails(editor, "create", "here.py", file_text="x")
    assert "a directory" in fails(editor, "create", ROOT, file_text="x")
    assert sb.read_file(f"{ROOT}/here.py") == b"keep\n"


def test_create_errors(sb, editor):
    assert "'file_text' is required" in fails(editor, "create", "x.py")
    put(sb, "plain", "x\n")
    assert "parent directories is a file" in fails(editor, "create", "plain/x.py", file_text="x")
    assert "outside" in fails(editor, "create", "/usr/local/x.py", file_text="x")


def test_create_then_undo_removes_the_file(sb, editor):
    editor.run("create", "tmp.py", file_text="x\n")
    assert "removed" in editor.run("undo_edit", "tmp.py")
    assert "does not exist" in fails(editor, "view", "tmp.py")
    assert "no edit history" in fails(editor, "undo_edit", "tmp.py")
    editor.run("create", "tmp.py", file_text="again\n")  # the path is free again
    assert sb.read_file(f"{ROOT}/tmp.py") == b"again\n"


# -- str_replace ----------------------------------------------------------------------------------
def test_str_replace_edits_and_shows_a_snippet(sb, editor):
    path = put(sb, "s.py", "".join(f"line {i}\n" for i in range(1, 21)))
    out = editor.run("str_replace", path, old_str="line 10\n", new_str="ten\nTEN\n")
    assert out.startswith(f"The file {path} has been edited.")
    assert numbered("line 6", "line 7", "line 8", "line 9", "ten", "TEN", "line 11", first=6) in out
    assert "\tline 5\n" not in out and "\tline 14\n" in out and "\tline 15\n" not in out
    assert sb.read_file(path).decode().splitlines()[8:12] == ["line 9", "ten", "TEN", "line 11"]


def test_str_replace_default_new_str_deletes(sb, editor):
    path = put(sb, "d.py", "keep\ndrop me\nkeep too\n")
    editor.run("str_replace", path, old_str="drop me\n")
    assert sb.read_file(path) == b"keep\nkeep too\n"


def test_str_replace_keeps_tabs_exact(sb, editor):
    path = put(sb, "t.py", "def f():\n\treturn 1\n")
    editor.run("str_replace", path, old_str="\treturn 1", new_str="\treturn\t2")
    assert sb.read_file(path) == b"def f():\n\treturn\t2\n"
    assert "not found verbatim" in fails(editor, "str_replace", path, old_str="    return\t2")


def test_str_replace_not_found_mentions_whitespace(sb, editor):
    path = put(sb, "n.py", "def f():\n    return 1\n")
    message = fails(editor, "str_replace", path, old_str="return 2")
    assert "not found verbatim" in message and "whitespace" in message and "indentation" in message
    hinted = fails(editor, "str_replace", path, old_str="return 1  \n\n")
    assert "leading/trailing whitespace" in hinted


def test_str_replace_multiple_occurrences_lists_lines(sb, editor):
    path = put(sb, "m.py", "x = 1\ny = 2\nx = 1\n\nx = 1\n")
    message = fails(editor, "str_replace", path, old_str="x = 1")
    assert "3 times" in message and "lines 1, 3, 5" in message and "more surrounding lines" in message
    assert sb.read_file(path) == b"x = 1\ny = 2\nx = 1\n\nx = 1\n"
    editor.run("str_replace", path, old_str="y = 2\nx = 1", new_str="y = 2\nx = 3")
    assert sb.read_file(path) == b"x = 1\ny = 2\nx = 3\n\nx = 1\n"


def test_str_replace_overlapping_occurrences_are_ambiguous(sb, editor):
    path = put(sb, "o.txt", "aaa\n")
    assert "2 times" in fails(editor, "str_replace", path, old_str="aa", new_str="b")


def test_str_replace_argument_errors(sb, editor):
    path = put(sb, "e.py", "x\n")
    assert "'old_str' is required" in fails(editor, "str_replace", path, new_str="y")
    assert "empty" in fails(editor, "str_replace", path, old_str="", new_str="y")
    assert "identical" in fails(editor, "str_replace", path, old_str="x", new_str="x")
    assert "does not exist" in fails(editor, "str_replace", "nope.py", old_str="x", new_str="y")
    assert "is a directory" in fails(editor, "str_replace", ROOT, old_str="x", new_str="y")
    put(sb, "bin.dat", b"\xff\xfe\x00")
    assert "not UTF-8" in fails(editor, "str_replace", "bin.dat", old_str="x", new_str="y")
    assert sb.read_file(path) == b"x\n"


def test_str_replace_unicode(sb, editor):
    path = put(sb, "u.txt", "naïve café\n日本語のテキスト\nemoji 🌳🍎\n")
    out = editor.run("str_replace", path, old_str="日本語", new_str="中文")
    assert numbered("naïve café", "中文のテキスト", "emoji 🌳🍎") in out
    assert sb.read_file(path) == "naïve café\n中文のテキスト\nemoji 🌳🍎\n".encode()


def test_crlf_file_is_edited_with_lf_strings_and_stays_crlf(sb, editor):
    path = put(sb, "w.txt", b"one\r\ntwo\r\nthree\r\n")
    assert editor.run("view", path).endswith(numbered("one", "two", "three"))
    editor.run("str_replace", path, old_str="one\ntwo", new_str="1\n2\n2.5")
    assert sb.read_file(path) == b"1\r\n2\r\n2.5\r\nthree\r\n"
    editor.run("str_replace", path, old_str="2.5\r\n", new_str="")  # CRLF in old_str also matches
    assert sb.read_file(path) == b"1\r\n2\r\nthree\r\n"
    editor.run("insert", path, insert_line=3, new_str="four")
    assert sb.read_file(path) == b"1\r\n2\r\nthree\r\nfour\r\n"
    editor.run("undo_edit", path)
    editor.run("undo_edit", path)
    editor.run("undo_edit", path)
    assert sb.read_file(path) == b"one\r\ntwo\r\nthree\r\n"


def test_mixed_line_endings_are_matched_exactly(sb, editor):
    path = put(sb, "mixed.txt", b"a\r\nb\nc\r\n")
    assert "not found verbatim" in fails(editor, "str_replace", path, old_str="a\nb")
    editor.run("str_replace", path, old_str="a\r\nb", new_str="A\r\nB")
    assert sb.read_file(path) == b"A\r\nB\nc\r\n"


@pytest.mark.parametrize("ending", ["", "\n"])
def test_trailing_newline_state_is_preserved(sb, editor, ending):
    path = put(sb, "nl.txt", "a\nb\nc" + ending)
    editor.run("str_replace", path, old_str="c", new_str="C")
    assert sb.read_file(path) == ("a\nb\nC" + ending).encode()
    editor.run("insert", path, insert_line=3, new_str="d")
    assert sb.read_file(path) == ("a\nb\nC\nd" + ending).encode()
    editor.run("insert", path, insert_line=0, new_str="top\n")
    assert sb.read_file(path) == ("top\na\nb\nC\nd" + ending).encode()


def test_edits_keep_the_file_mode(sb, editor):
    path = put(sb, "run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    editor.run("str_replace", path, old_str="hi", new_str="bye")
    editor.run("insert", path, insert_line=2, new_str="echo more")
    editor.run("undo_edit", path)
    assert sb.exec(f"stat -c %a {path}").stdout.strip() == "755"
    assert sb.exec(path).stdout == "bye\n"


# -- insert ---------------------------------------------------------------------------------------
def test_insert_at_top_middle_and_end(sb, editor):
    path = put(sb, "i.txt", "a\nb\n")
    editor.run("insert", path, insert_line=0, new_str="start")
    editor.run("insert", path, insert_line=2, new_str="mid1\nmid2")
    out = editor.run("insert", path, insert_line=5, new_str="end\n")
    assert sb.read_file(path) == b"start\na\nmid1\nmid2\nb\nend\n"
    assert out.startswith(f"The file {path} has been edited.")
    assert numbered("a", "mid1", "mid2", "b", "end", first=2) in out


def test_insert_blank_line_and_into_empty_file(sb, editor):
    path = put(sb, "i.txt", "a\nb\n")
    editor.run("insert", path, insert_line=1, new_str="")
    assert sb.read_file(path) == b"a\n\nb\n"
    empty = put(sb, "empty.txt", "")
    editor.run("insert", empty, insert_line=0, new_str="first")
    assert sb.read_file(empty) == b"first\n"


def test_insert_errors(sb, editor):
    path = put(sb, "i.txt", "a\nb\n")
    assert "out of range" in fails(editor, "insert", path, insert_line=3, new_str="x")
    assert "0 (top) to 2 (end)" in fails(editor, "insert", path, insert_line=-1, new_str="x")
    assert "'insert_line' is required" in fails(editor, "insert", path, new_str="x")
    assert "'new_str' is required" in fails(editor, "insert", path, insert_line=1)
    assert "integer" in fails(editor, "insert", path, insert_line="1", new_str="x")
    assert "integer" in fails(editor, "insert", path, insert_line=True, new_str="x")
    assert "does not exist" in fails(editor, "insert", "nope.txt", insert_line=0, new_str="x")
    assert "is a directory" in fails(editor, "insert", ROOT, insert_line=0, new_str="x")
    assert sb.read_file(path) == b"a\nb\n"


# -- undo_edit ------------------------------------------------------------------------------------
def test_undo_chain_walks_back_through_every_edit(sb, editor):
    path = put(sb, "u.py", "v0\n")
    versions = [b"v0\n"]
    editor.run("str_replace", path, old_str="v0", new_str="v1")
    versions.append(sb.read_file(path))
    editor.run("insert", path, insert_line=1, new_str="v2")
    versions.append(sb.read_file(path))
    editor.run("str_replace", path, old_str="v2\n", new_str="")
    for expected in reversed(versions):
        out = editor.run("undo_edit", path)
        assert out.startswith(f"Last edit to {path} undone successfully.")
        assert sb.read_file(path) == expected
    assert "no edit history" in fails(editor, "undo_edit", path)


def test_undo_chain_through_create(sb, editor):
    editor.run("create", "c.py", file_text="a\n")
    editor.run("str_replace", "c.py", old_str="a", new_str="b")
    assert numbered("a") in editor.run("undo_edit", "c.py")
    assert sb.read_file(f"{ROOT}/c.py") == b"a\n"
    assert "removed" in editor.run("undo_edit", f"{ROOT}/c.py")  # absolute and relative are one file
    assert sb.exec(f"test -e {ROOT}/c.py").exit_code == 1


def test_undo_history_is_per_file(sb, editor):
    a, b = put(sb, "a.txt", "a\n"), put(sb, "b.txt", "b\n")
    editor.run("str_replace", a, old_str="a", new_str="A")
    editor.run("str_replace", b, old_str="b", new_str="B")
    editor.run("undo_edit", a)
    assert (sb.read_file(a), sb.read_file(b)) == (b"a\n", b"B\n")


def test_undo_restores_over_outside_changes(sb, editor):
    path = put(sb, "x.txt", "orig\n")
    editor.run("str_replace", path, old_str="orig", new_str="edited")
    sb.exec(f"echo changed-by-shell > {path}")
    editor.run("undo_edit", path)
    assert sb.read_file(path) == b"orig\n"


def test_undo_without_history(editor):
    assert "no edit history" in fails(editor, "undo_edit", "never.py")


# -- dispatch, paths and errors -------------------------------------------------------------------
def test_unknown_command_suggests_the_right_one(editor):
    message = fails(editor, "vew", "a.py")
    assert "'view'" in message and "str_replace" in message and "undo_edit" in message
    assert "unknown command" in fails(editor, "delete", "a.py")


def test_path_rules(sb, editor):
    assert "leaves /workspace/repo" in fails(editor, "view", "../outside.txt")
    assert "leaves" in fails(editor, "create", "a/../../x.txt", file_text="x")
    assert "path is required" in fails(editor, "view", "")
    put(sb, "abs.txt", "x\n")
    assert numbered("x") in editor.run("view", "/workspace/repo/abs.txt")
    sb.write_file("/tmp/elsewhere.txt", "y\n")  # absolute paths are used as given, even outside root
    assert numbered("y") in editor.run("view", "/tmp/elsewhere.txt")


def test_root_must_be_absolute(sb):
    with pytest.raises(ConfigError):
        Editor(sb, "relative/root")


def test_tool_error_is_an_orchard_error():
    assert issubclass(ToolError, OrchardError)


def test_infrastructure_errors_propagate_unchanged(local_backend):
    sandbox = local_backend.create(SandboxSpec())
    editor = Editor(sandbox, ROOT)
    sandbox.close()
    with pytest.raises(SandboxClosed):
        editor.run("view", "a.py")


def test_editor_leaves_the_agent_session_alone(sb, editor):
    sb.exec("cd /tmp && export MARK=1")
    editor.run("create", "f.txt", file_text="x\n")
    editor.run("view", ROOT)
    editor.run("str_replace", "f.txt", old_str="x", new_str="y")
    assert sb.exec('pwd; echo "$MARK"').stdout.splitlines() == ["/tmp", "1"]


# -- property -------------------------------------------------------------------------------------
LINE_TEXT = st.text(alphabet=st.sampled_from("ab \t\né🌳x"), max_size=40)


def _is_unique(text: str, part: str) -> bool:
    first = text.find(part)
    return first != -1 and text.find(part, first + 1) == -1


@st.composite
def text_and_unique_part(draw: st.DrawFn) -> tuple[str, str]:
    """A text and a substring occurring exactly once: grow a random slice until it is unique."""
    text = draw(LINE_TEXT.filter(bool))
    start = draw(st.integers(0, len(text) - 1))
    end = draw(st.integers(start + 1, len(text)))
    while not _is_unique(text, text[start:end]):
        if end < len(text):
            end += 1
        else:
            start -= 1
    return text, text[start:end]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=text_and_unique_part(), new=LINE_TEXT, crlf=st.booleans())
def test_str_replace_then_undo_restores_the_bytes(shared_sandbox, case, new, crlf):
    text, old = case
    assume(old != new)
    original = (text.replace("\n", "\r\n") if crlf else text).encode()
    crlf_file = crlf and "\n" in text
    expected = text.replace(old, new)
    if crlf_file:
        expected = expected.replace("\n", "\r\n")
    path = f"/workspace/prop-{uuid.uuid4().hex}.txt"
    shared_sandbox.write_file(path, original)
    editor = Editor(shared_sandbox, "/workspace")
    editor.run("str_replace", path, old_str=old, new_str=new)
    assert shared_sandbox.read_file(path) == expected.encode()
    editor.run("undo_edit", path)
    assert shared_sandbox.read_file(path) == original
