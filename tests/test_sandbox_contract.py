"""The behaviour every backend promises, run against each real backend."""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from orchard_envs.errors import PatchError, SandboxClosed, SandboxError, SandboxFileNotFound


def test_session_keeps_cwd_env_and_background_jobs(sandbox):
    assert sandbox.exec("mkdir -p sub && cd sub && export GREETING=hello").ok
    (sandbox.exec("(sleep 0.3; echo late > /tmp/bg) &"))
    result = sandbox.exec("echo $GREETING; pwd; sleep 0.6; cat /tmp/bg")
    assert result.stdout.splitlines() == ["hello", f"{sandbox.spec.workdir}/sub", "late"]


def test_one_shot_exec_starts_fresh_in_workdir(sandbox):
    sandbox.exec("cd /tmp && export GREETING=hello")
    result = sandbox.exec('pwd; echo "[$GREETING]"', session=False)
    assert result.stdout.splitlines() == [sandbox.spec.workdir, "[]"]


def test_exit_code_and_separate_streams(sandbox):
    result = sandbox.exec("echo out; echo err >&2; exit 3", session=False)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    result = sandbox.exec("echo out; echo err >&2; false")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "out\n", "err\n")


def test_output_without_trailing_newline_is_exact(sandbox):
    assert sandbox.exec("printf 'a\\nb'").stdout == "a\nb"
    assert sandbox.exec("printf ''").stdout == ""


def test_exit_in_session_restarts_the_session(sandbox):
    sandbox.exec("cd /tmp")
    result = sandbox.exec("exit 7")
    assert result.exit_code == 7
    after = sandbox.exec("pwd")
    assert after.ok and after.stdout.strip() == "/tmp"


def test_syntax_error_is_an_error_not_a_dead_session(sandbox):
    result = sandbox.exec("if then fi (")
    assert result.exit_code != 0 and "syntax error" in result.stderr
    assert sandbox.exec("echo still here").stdout == "still here\n"


def test_per_call_cwd_and_env_do_not_persist(sandbox):
    result = sandbox.exec('pwd; echo "$X"', cwd="/tmp", env={"X": "1"})
    assert result.stdout.splitlines() == ["/tmp", "1"]
    result = sandbox.exec('pwd; echo "[$X]"')
    assert result.stdout.splitlines() == [sandbox.spec.workdir, "[]"]


def test_spec_env_is_visible(make_sandbox):
    sandbox = make_sandbox(env={"ORCHARD_TEST": "yes"})
    assert sandbox.exec("echo $ORCHARD_TEST").stdout == "yes\n"
    assert sandbox.exec("echo $ORCHARD_TEST", session=False).stdout == "yes\n"


def test_base_image_has_python_and_git(sandbox):
    result = sandbox.exec("python3 -c 'print(1 + 1)' && git --version", session=False)
    assert result.ok, result
    assert result.stdout.startswith("2\ngit version")


def test_timeout_kills_the_command_tree_and_keeps_the_session(sandbox):
    sandbox.exec("export KEEP=1; cd /tmp")
    result = sandbox.exec("(sleep 1.5; touch /tmp/late) & sleep 60", timeout=0.3)
    assert result.timed_out and result.exit_code == 124
    time.sleep(1.7)
    after = sandbox.exec("ls /tmp/late; echo $KEEP; pwd")
    assert "No such file" in after.stderr
    assert after.stdout.splitlines() == ["1", "/tmp"]


def test_timeout_of_a_builtin_loop_restarts_the_shell_in_the_same_directory(sandbox):
    sandbox.exec("cd /tmp")
    result = sandbox.exec("while :; do :; done", timeout=0.3)
    assert result.timed_out
    assert sandbox.exec("pwd").stdout == "/tmp\n"


def test_one_shot_timeout(sandbox):
    result = sandbox.exec("sleep 60", timeout=0.3, session=False)
    assert result.timed_out and result.exit_code == 124
    assert sandbox.exec("echo ok", session=False).stdout == "ok\n"


def test_output_is_capped_with_a_marker(make_sandbox):
    sandbox = make_sandbox(max_output=4096)
    for session in (True, False):
        result = sandbox.exec("head -c 100000 /dev/zero | tr '\\0' a; echo; echo END", session=session)
        assert result.truncated
        assert "output truncated" in result.stdout
        assert len(result.stdout) < 4096 + 200
        assert result.stdout.endswith("END\n")


def test_non_utf8_output_is_replaced_not_raised(sandbox):
    result = sandbox.exec("printf 'ok \\377\\376 done'")
    assert result.stdout == "ok \ufffd\ufffd done"


def test_files_round_trip(sandbox):
    sandbox.write_file("dir/nested/a.txt", "hello\n")
    sandbox.write_file("/tmp/b.bin", b"\x00\xff")
    assert sandbox.read_file("dir/nested/a.txt") == b"hello\n"
    assert sandbox.read_file("/tmp/b.bin") == b"\x00\xff"
    assert sandbox.exec("cat dir/nested/a.txt").stdout == "hello\n"
    names = {(e.name, e.type) for e in sandbox.list_dir("dir")}
    assert names == {("nested", "dir")}
    [entry] = sandbox.list_dir("dir/nested")
    assert (entry.name, entry.type, entry.size, entry.path) == (
        "a.txt", "file", 6, f"{sandbox.spec.workdir}/dir/nested/a.txt"
    )


def test_read_missing_file_is_a_clear_error(sandbox):
    with pytest.raises(SandboxFileNotFound, match="no-such-file"):
        sandbox.read_file("no-such-file")


def test_upload_and_download_directories(sandbox, tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("X = 1\n")
    (source / "README").write_text("hi\n")
    sandbox.upload_dir(source, "project")
    assert sandbox.exec("cat project/pkg/mod.py project/README").stdout == "X = 1\nhi\n"
    sandbox.exec("echo more >> project/README")
    sandbox.download_dir("project", tmp_path / "back")
    assert (tmp_path / "back" / "README").read_text() == "hi\nmore\n"
    with tarfile.open(fileobj=io.BytesIO(sandbox.download_tar("project"))) as tar:
        assert "./pkg/mod.py" in tar.getnames()


def test_apply_patch(sandbox):
    sandbox.exec("git init -q repo && cd repo && printf 'a\\nb\\n' > f.txt")
    patch = "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    sandbox.apply_patch(patch, cwd=f"{sandbox.spec.workdir}/repo")
    assert sandbox.read_file("repo/f.txt") == b"a\nc\n"
    with pytest.raises(PatchError, match="does not apply"):
        sandbox.apply_patch(patch, cwd=f"{sandbox.spec.workdir}/repo")


def test_close_is_idempotent_and_exec_after_close_is_clear(backend):
    from orchard_envs.sandbox import SandboxSpec

    sandbox = backend.create(SandboxSpec())
    sandbox.close()
    sandbox.close()
    with pytest.raises(SandboxClosed, match="closed"):
        sandbox.exec("true")
    with pytest.raises(SandboxClosed):
        sandbox.read_file("x")


def test_sandbox_is_reaped_after_its_ttl(make_sandbox):
    sandbox = make_sandbox(ttl=2)
    assert sandbox.exec("true").ok
    time.sleep(3.5)
    with pytest.raises(SandboxError):
        result = sandbox.exec("true", timeout=5)
        assert not result.ok  # a dead sandbox must never look healthy
        raise SandboxError("dead sandbox answered with an error result")


def test_fork_copies_files_and_session_and_then_diverges(sandbox):
    sandbox.exec("mkdir -p /tmp/w && cd /tmp/w && echo parent > f && export TAG=forked")
    sandbox.write_file("ws.txt", "workspace\n")
    child = sandbox.fork()
    try:
        assert child.exec("pwd; cat f; echo $TAG").stdout.splitlines() == ["/tmp/w", "parent", "forked"]
        assert child.read_file("ws.txt") == b"workspace\n"
        child.exec("echo child > f")
        sandbox.exec("echo parent2 > f")
        assert child.exec("cat f").stdout == "child\n"
        assert sandbox.exec("cat f").stdout == "parent2\n"
    finally:
        child.close()


def test_snapshot_restores_into_new_sandboxes(backend, sandbox):
    sandbox.write_file("state.txt", "v1")
    snap = sandbox.snapshot()
    sandbox.write_file("state.txt", "v2")
    restored = [backend.create(snapshot=snap) for _ in range(2)]
    try:
        assert [s.read_file("state.txt") for s in restored] == [b"v1", b"v1"]
    finally:
        for s in restored:
            s.close()
        backend.drop_snapshot(snap)


def test_base_dir_seeds_the_workdir_without_changing_it(make_sandbox, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "seed.txt").write_text("seeded\n")
    sandbox = make_sandbox(base_dir=tmp_path)
    assert sandbox.exec("cat pkg/seed.txt").stdout == "seeded\n"
    sandbox.exec("echo changed > pkg/seed.txt && rm -r pkg && touch new")
    assert (tmp_path / "pkg" / "seed.txt").read_text() == "seeded\n"
    assert not (tmp_path / "new").exists()
    with sandbox.fork() as child:
        assert child.exec("ls").stdout == "new\n"
    assert make_sandbox(base_dir=tmp_path).exec("cat pkg/seed.txt").stdout == "seeded\n"


def test_paths_with_quotes_and_spaces(sandbox, tmp_path):
    odd = "it's a dir"
    (tmp_path / "f.txt").write_text("x")
    sandbox.upload_dir(tmp_path, odd)
    assert sandbox.read_file(f"{odd}/f.txt") == b"x"
    with tarfile.open(fileobj=io.BytesIO(sandbox.download_tar(odd))) as tar:
        assert "./f.txt" in tar.getnames()
    sandbox.exec(f'cd "{odd}"')
    sandbox.exec("exit 0")  # the next session restarts in the odd directory
    assert sandbox.exec("pwd").stdout == f"{sandbox.spec.workdir}/{odd}\n"


def test_session_killed_between_commands_is_replaced(sandbox):
    sandbox.exec("cd /tmp && echo $$ > /tmp/session.pid")
    assert sandbox.exec("kill -9 $(cat /tmp/session.pid)", session=False).ok
    time.sleep(0.2)
    result = sandbox.exec("echo back; pwd")
    assert result.stdout == "back\n/tmp\n", result
