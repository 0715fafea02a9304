"""Which files an agent may change, and splitting real `git diff` output by file without losing any."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swe_fixtures import diff_of, git, init_repo

from orchard_envs.tasks.swe.patches import (
    file_sections,
    is_protected,
    split_patch,
    suspicious_changes,
    touched_files,
)

PROTECTED = [
    # test folders, at any depth
    "tests/test_calc.py",
    "tests/helpers.py",
    "tests/data/input.json",
    "test/util.py",
    "testing/fixtures.py",
    "pkg/tests/__init__.py",
    "src/pkg/sub/tests/cases/big.txt",
    # test modules and conftest anywhere
    "test_calc.py",
    "pkg/test_mod.py",
    "pkg/mod_test.py",
    "pkg/mod_tests.py",
    "pkg/tests.py",
    "conftest.py",
    "pkg/conftest.py",
    "src/pkg/deep/er/conftest.py",
    # test configuration, at the root or below
    "pytest.ini",
    ".pytest.ini",
    "pkg/.pytest.ini",
    "tox.ini",
    "setup.cfg",
    "pyproject.toml",
    "sub/project/pyproject.toml",
    "noxfile.py",
    ".coveragerc",
    # interpreter start-up hooks
    "sitecustomize.py",
    "src/usercustomize.py",
    "calc/sitecustomize.py",
    "evil.pth",
    "src/zz.pth",
    # bytecode (can stand in for a test module) and package metadata (pytest loads its entry points)
    "calc/__pycache__/__init__.cpython-311.pyc",
    "pkg/__pycache__/test_mod.cpython-311-pytest-8.3.4.pyc",
    "calc/helper.pyc",
    "calc_tools-1.0.dist-info/entry_points.txt",
    "src/calc_tools.egg-info/entry_points.txt",
    # any case (importlib.metadata lowercases folder names) and any spelling of the path
    "Evil-1.0.DIST-INFO/entry_points.txt",
    "Evil-1.0.Dist-Info/METADATA",
    "Evil.EGG-INFO/entry_points.txt",
    "src/Evil.EGG-INFO",
    "Tests/helper.py",
    "CONFTEST.py",
    "Setup.CFG",
    "./conftest.py",
    "calc//conftest.py",
    "calc/../conftest.py",
    "calc/x/../../Evil.egg-info/entry_points.txt",
]
NOT_PROTECTED = [
    "calc/__init__.py",
    "calc/core.py",
    "src/pkg/module.py",
    "setup.py",
    "README.md",
    "docs/testing.md",
    "calc/testing.py",
    "calc/contest.py",
    "calc/latest.py",
    "mytests/x.py",
    "tests_data.py",
    "attest/check.py",
    "calc/pytest_plugin.py",
    "calc/pyproject.py",
    "calc/config.ini",
    "calc/path.pthx",
    "calc/pycache/x.py",
    "calc/dist-info.py",
]


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_paths(path):
    assert is_protected(path)


@pytest.mark.parametrize("path", NOT_PROTECTED)
def test_ordinary_source_files_are_not_protected(path):
    assert not is_protected(path)


def _case_variants(path: str) -> st.SearchStrategy[str]:
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in path)).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PROTECTED).flatmap(_case_variants))
def test_every_case_variant_of_a_protected_path_is_protected(path):
    """importlib.metadata finds `X.DIST-INFO` as readily as `x.dist-info`: no spelling may slip through."""
    assert is_protected(path)


def test_importlib_metadata_reads_upper_case_metadata_folders(tmp_path):
    """The reason for casefolding: an upper-case *.DIST-INFO on sys.path is an installed distribution."""
    from importlib import metadata

    meta = tmp_path / "Evil-1.0.DIST-INFO"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text("[pytest11]\nevil = evil_plugin\n")
    found = metadata.distributions(path=[str(tmp_path)])
    points = [ep for dist in found for ep in dist.entry_points if ep.group == "pytest11"]
    assert [ep.value for ep in points] == ["evil_plugin"]
    assert is_protected("Evil-1.0.DIST-INFO/entry_points.txt")


# --- file_sections and split_patch on real git output ---------------------------------------------------

BASE = {
    "calc/core.py": "".join(f"def f{i}():\n    return {i}\n\n" for i in range(12)),
    "calc/old_name.py": "".join(f"VALUE_{i} = {i}\n" for i in range(20)),
    "calc/gone.py": "GONE = True\n",
    "calc/data.bin": b"\x00\x01\x02binary\x00" * 20,
    "run.sh": "#!/bin/sh\necho hi\n",
    "docs/a b/notes.txt": "notes\n",
    "docs/café/ünï.py": "X = 1\n",
    'docs/q"uote.py': "Q = 1\n",
    "tests/test_core.py": "def test_one():\n    assert True\n",
    "tests/helper.py": "".join(f"H{i} = {i}\n" for i in range(20)),
    "tests/x b/fixture.bin": b"\x00fixture\x00",
    "setup.cfg": "[tool:pytest]\ntestpaths = tests\n",
}


@pytest.fixture
def repo(tmp_path) -> Path:
    init_repo(tmp_path / "repo", BASE)
    return tmp_path / "repo"


def sections_by_path(patch: str) -> dict[frozenset[str], str]:
    return {frozenset(paths): chunk for paths, chunk in file_sections(patch)}


def apply_error(repo: Path, patch: str) -> str:
    """git apply --check's complaint about `patch` on the repository's current files ('' if it applies)."""
    if not patch:
        return ""
    result = subprocess.run(
        ["git", "-C", str(repo), "apply", "--check", "-"], input=patch.encode(), capture_output=True
    )
    return result.stderr.decode() if result.returncode else ""


def test_sections_of_every_kind_of_change(repo):
    os.chmod(repo / "run.sh", 0o755)  # mode-only change
    patch = diff_of(
        repo,
        {
            "calc/core.py": BASE["calc/core.py"].replace("return 3", "return 33"),
            "calc/old_name.py": None,
            "calc/new_name.py": BASE["calc/old_name.py"],  # a pure rename under -M
            "calc/gone.py": None,
            "calc/added.py": "ADDED = 1\n",
            "calc/empty.py": "",
            "calc/data.bin": b"\x00\xffchanged\x00" * 20,
            "calc/new.bin": b"\x00new\x00",
            "docs/a b/notes.txt": "notes, edited\n",
            "docs/a b/new.bin": b"\x00in a spaced folder\x00",
            "docs/café/ünï.py": "X = 2\n",
            'docs/q"uote.py': "Q = 2\n",
        },
        "-M",
    )
    assert 'diff --git "a/docs/caf\\303\\251/\\303\\274n\\303\\257.py"' in patch  # git quoted it
    assert "GIT binary patch" in patch and "rename from calc/old_name.py" in patch
    found = {frozenset(paths) for paths, _ in file_sections(patch)}
    assert found == {
        frozenset({"calc/core.py"}),
        frozenset({"calc/old_name.py", "calc/new_name.py"}),
        frozenset({"calc/gone.py"}),
        frozenset({"calc/added.py"}),
        frozenset({"calc/empty.py"}),
        frozenset({"calc/data.bin"}),
        frozenset({"calc/new.bin"}),
        frozenset({"run.sh"}),
        frozenset({"docs/a b/notes.txt"}),
        frozenset({"docs/a b/new.bin"}),
        frozenset({"docs/café/ünï.py"}),
        frozenset({'docs/q"uote.py'}),
    }
    kept, dropped = split_patch(patch)
    assert dropped == [] and kept == patch
    assert apply_error(repo, kept) == ""


def test_split_drops_protected_sections_and_keeps_the_rest_applicable(repo):
    patch = diff_of(
        repo,
        {
            "calc/core.py": BASE["calc/core.py"].replace("return 3", "return 33"),
            "tests/test_core.py": "def test_one():\n    assert 1\n",  # edited test
            "tests/helper.py": None,
            "calc/helper.py": BASE["tests/helper.py"],  # renamed out of tests/: still a test change
            "conftest.py": "import pytest\n",
            "setup.cfg": "[tool:pytest]\naddopts = -p no:terminal\n",
            "tests/x b/fixture.bin": b"\x00tampered\x00",
            "calc/sitecustomize.py": "import os\n",
            "calc/data.bin": b"\x00\xffchanged\x00" * 20,
        },
        "-M",
    )
    kept, dropped = split_patch(patch)
    assert dropped == sorted(
        [
            "calc/sitecustomize.py",
            "conftest.py",
            "setup.cfg",
            "tests/helper.py",
            "tests/test_core.py",
            "tests/x b/fixture.bin",
        ]
    )
    assert touched_files(kept) == {"calc/core.py", "calc/data.bin"}
    assert apply_error(repo, kept) == ""
    assert "tampered" not in kept and "conftest" not in kept


def test_also_protected_paths_are_dropped_exactly(repo):
    patch = diff_of(repo, {"calc/core.py": "X = 1\n", "calc/added.py": "Y = 1\n"})
    kept, dropped = split_patch(patch, {"calc/added.py"})
    assert dropped == ["calc/added.py"] and touched_files(kept) == {"calc/core.py"}


def test_headers_whose_path_holds_a_b_slash(repo):
    """Binary, empty and mode-only sections name their file only in the header; ' b/' inside the path must
    not cut it short (it would hide the 'tests' folder and keep a protected change)."""
    (repo / "tests" / "x b").mkdir(exist_ok=True)
    os.chmod(repo / "tests" / "x b" / "fixture.bin", 0o755)
    patch = diff_of(
        repo, {"tests/x b/new.bin": b"\x00bin\x00", "tests/x b/empty.txt": "", "a b/c b/d.bin": b"\x00"}
    )
    assert {frozenset(p) for p, _ in file_sections(patch)} == {
        frozenset({"tests/x b/fixture.bin"}),
        frozenset({"tests/x b/new.bin"}),
        frozenset({"tests/x b/empty.txt"}),
        frozenset({"a b/c b/d.bin"}),
    }
    kept, dropped = split_patch(patch)
    assert dropped == ["tests/x b/empty.txt", "tests/x b/fixture.bin", "tests/x b/new.bin"]
    assert touched_files(kept) == {"a b/c b/d.bin"}


def test_unquoted_utf8_paths_with_quotes(repo):
    """With core.quotePath=false git still quotes a name holding '"', but leaves its UTF-8 bytes raw."""
    git(repo, "config", "core.quotePath", "false")
    patch = diff_of(
        repo, {'docs/q"uote.py': "Q = 3\n", 'tests/ü"ber.py': "U = 1\n", "docs/café/ünï.py": "X = 5\n"}
    )
    assert '"a/tests/ü\\"ber.py"' in patch
    paths = touched_files(patch)
    assert paths == {'docs/q"uote.py', 'tests/ü"ber.py', "docs/café/ünï.py"}
    assert split_patch(patch)[1] == ['tests/ü"ber.py']


def test_protection_does_not_depend_on_the_diff_prefixes(repo):
    """An agent can set diff.mnemonicPrefix (c/ i/ w/) or diff.noprefix in its repository's config."""
    edits = {
        "tests/test_core.py": "def test_one():\n    pass\n",
        "conftest.py": "X = 1\n",
        "calc/gone.py": "G = 0\n",
    }
    for setting in ("diff.mnemonicPrefix", "diff.noprefix"):
        git(repo, "config", setting, "true")
        kept, dropped = split_patch(diff_of(repo, edits))
        assert {p.rsplit("/", 1)[-1] for p in dropped} == {"test_core.py", "conftest.py"}, setting
        assert "gone.py" in kept and "test_core" not in kept
        git(repo, "config", "--unset", setting)


def test_empty_and_junk_patches():
    assert split_patch("") == ("", [])
    assert touched_files("") == set()
    assert file_sections("not a diff\n--- a\n+++ b\n") == []


# --- property: random edits in a fresh repository ----------------------------------------------------------

# Base files, each of which an example may leave, edit, delete, chmod, make binary or rename.
POOL = [
    "calc/core.py",
    "calc/util.py",
    "docs/x b/notes.txt",
    "docs/café/ünï.py",
    "tests/test_core.py",
    "tests/helpers.py",
    "tests/x b/data.txt",
    "conftest.py",
    "setup.cfg",
    "pkg/mod_test.py",
]
# Files an example may create.
NEW = [
    "calc/new.py",
    "calc/a b/new.py",
    "tests/test_new.py",
    "tests/x b/blob.bin",
    "sitecustomize.py",
    "calc/hook.pth",
    ".pytest.ini",
    "calc_tools-1.0.dist-info/entry_points.txt",
    "calc/__pycache__/core.cpython-311.pyc",
    "lib/ßpecial name.py",
]
RENAME_TARGETS = ["calc/moved.py", "tests/moved.py", "calc/sub dir/moved.py"]

content = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30).map(
    lambda s: s + "\n"
)
base_action = st.one_of(
    st.just(("keep",)),
    st.tuples(st.just("edit"), content),
    st.just(("delete",)),
    st.just(("chmod",)),
    st.tuples(st.just("binary"), st.binary(min_size=1, max_size=20).map(lambda b: b"\x00" + b)),
    st.tuples(st.just("rename"), st.sampled_from(RENAME_TARGETS)),
)
new_action = st.one_of(
    st.just(("none",)),
    st.tuples(st.just("text"), content),
    st.just(("empty",)),
    st.tuples(st.just("binary"), st.binary(max_size=20).map(lambda b: b"\x00" + b)),
)


def _base_text(path: str) -> str:
    return "".join(f"line {i} of {path}\n" for i in range(8))


def _changed_entries(repo: Path) -> list[set[str]]:
    """git's own account of the staged change, one set of paths per file (two for a rename)."""
    fields = git(repo, "diff", "--cached", "--name-status", "-z", "-M", "HEAD").split("\0")
    entries, i = [], 0
    while i < len(fields) and fields[i]:
        status = fields[i]
        count = 2 if status[0] in "RC" else 1
        entries.append(set(fields[i + 1 : i + 1 + count]))
        i += 1 + count
    return entries


def _status_paths(repo: Path) -> set[str]:
    out = git(repo, "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all")
    return {entry[3:] for entry in out.split("\0") if entry}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base_actions=st.lists(base_action, min_size=len(POOL), max_size=len(POOL)),
    new_actions=st.lists(new_action, min_size=len(NEW), max_size=len(NEW)),
)
def test_split_keeps_exactly_the_unprotected_files(base_actions, new_actions):
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        init_repo(repo, {path: _base_text(path) for path in POOL})
        renamed: set[str] = set()
        for path, action in zip(POOL, base_actions, strict=True):
            target = repo / path
            if action[0] == "edit":
                target.write_text(_base_text(path) + action[1])
            elif action[0] == "delete":
                target.unlink()
            elif action[0] == "chmod":
                target.chmod(0o755)
            elif action[0] == "binary":
                target.write_bytes(action[1])
            elif action[0] == "rename" and action[1] not in renamed:
                renamed.add(action[1])
                (repo / action[1]).parent.mkdir(parents=True, exist_ok=True)
                target.rename(repo / action[1])
        for path, action in zip(NEW, new_actions, strict=True):
            if action[0] == "none":
                continue
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            data = b"" if action[0] == "empty" else action[1]
            (repo / path).write_bytes(data.encode() if isinstance(data, str) else data)
        git(repo, "add", "-A")
        patch = git(repo, "diff", "--cached", "--binary", "-M", "HEAD")
        entries = _changed_entries(repo)

        assert [set(paths) for paths, _ in file_sections(patch)] == entries
        kept, dropped = split_patch(patch)
        expected_kept = set().union(*(e for e in entries if not any(map(is_protected, e))))
        expected_dropped = {p for e in entries for p in e if is_protected(p)}
        assert dropped == sorted(expected_dropped)

        git(repo, "reset", "-q", "--hard", "HEAD")
        git(repo, "clean", "-qfdx")
        assert apply_error(repo, kept) == ""
        if kept:
            git(repo, "apply", "-", input=kept)
        assert _status_paths(repo) == expected_kept


# --- the scan of what a patch adds ----------------------------------------------------------------------

SUSPICIOUS_LINES = {
    "import _pytest.config": "_pytest",
    "def pytest_runtest_makereport(item, call):": "pytest hook",
    "import pluggy": "pluggy",
    "objs = gc.get_objects()": "gc.get_objects",
    'getattr(os, "_exit")(0)': "os._exit",
    "sys.settrace(tracer)": "tracer",
    "caller = sys._getframe(1).f_locals": "frame hacking",
    "frame = frame.f_back": "frame hacking",
    "open('/dev/fd/3', 'w')": "where the test report goes",
    "os.write(3, data)": "where the test report goes",
    "exec(code)": "run time",
    "mod = __import__(name)": "run time",
}


@pytest.mark.parametrize("line", list(SUSPICIOUS_LINES))
def test_scan_flags_added_code_that_reaches_into_pytest_or_the_process(line):
    patch = f"diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1,2 @@\n x = 1\n+{line}\n"
    reasons = suspicious_changes(patch)
    assert len(reasons) >= 1 and reasons[0].startswith("m.py: adds ")
    assert any(SUSPICIOUS_LINES[line] in r for r in reasons), reasons


def test_scan_reads_only_added_lines_but_every_one_of_them():
    removed = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,2 +1 @@\n x = 1\n-os._exit(0)\n"
    context = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n os._exit(0)\n-a\n+b\n"
    assert suspicious_changes(removed) == suspicious_changes(context) == []
    plus_plus = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1,2 @@\n x = 1\n+++os._exit(0)\n"
    assert suspicious_changes(plus_plus)  # `++os._exit(0)` is Python that calls it, not a header line
    binary = "diff --git a/m.so b/m.so\nnew file mode 100644\nGIT binary patch\nliteral 3\nKcmZQz\n\n"
    assert suspicious_changes(binary) == ["m.so: a binary file, which this scan cannot read"]


def test_scan_flags_no_gold_patch_of_the_bundled_suite():
    """Real fixes need none of it: a flag means something (the RL trainer gives flagged resolves nothing)."""
    from orchard_envs.tasks.swe.instance import load_suite

    assert {i.instance_id: suspicious_changes(i.patch) for i in load_suite("swe-mini")} == {
        i.instance_id: [] for i in load_suite("swe-mini")
    }
