"""Prepared trees: each instance's repository and Python environment, built once and reused by every reset.

A tree is a host folder that seeds a sandbox's workdir (`SandboxSpec.base_dir`): `repo/` at the base commit
and `.venv/` with the test requirements. The local backend mounts it as an overlay's lower layer (or copies
it, without root), so a reset copies nothing; docker and remote upload it. No file of a tree shares its
inode with another tree or the venv it came from (a write through one hard link would reach them all), and
each tree has a manifest (path, mode, size, sha256 of every entry) that the grader checks the sandbox's
copy against before it grades: a tree that changed is refused and prepared again.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchard_envs import paths
from orchard_envs.errors import SandboxError
from orchard_envs.sandbox import Sandbox, SandboxSpec
from orchard_envs.tasks.swe.instance import REPORT_PLUGIN, SWEInstance
from orchard_envs.tasks.swe.source import SourceError, materialize

WORKDIR = "/workspace"
REPO_DIR = f"{WORKDIR}/repo"
VENV_DIR = f"{WORKDIR}/.venv"
# The Python every backend's default image runs (Debian bookworm's); the venv links to it by path.
SANDBOX_PYTHON = "/usr/bin/python3"
INSTALL_TIMEOUT = 1800.0
SANDBOX_ENV = {
    "PATH": f"{VENV_DIR}/bin:/usr/local/bin:/usr/bin:/bin",
    "VIRTUAL_ENV": VENV_DIR,
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONSAFEPATH": "1",  # as in grading: the repository is importable through the venv's .pth only
    "PIP_NO_INDEX": "1",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
}
# Empty modules that win over any `sitecustomize.py` an agent drops into the repository, which `site`
# would otherwise import from the repository folder on the venv's path at every interpreter start.
SHADOWED_HOOKS = ("sitecustomize.py", "usercustomize.py")


def cache_root() -> Path:
    """Where prepared SWE trees are cached."""
    return paths.cache_root() / "swe"


MANIFEST_SUFFIX = ".manifest.json"


class TreeChanged(SandboxError):
    """A prepared tree no longer matches its manifest: something wrote to a shared file (infrastructure)."""


@dataclass(frozen=True)
class PreparedTree:
    """A ready tree: `path` seeds the sandbox workdir; `head` is the base commit inside `repo/`; `digest`
    the sha256 of its manifest when it was prepared (empty for a tree still being built)."""

    path: Path
    head: str
    digest: str = ""


def walk_tree(root: str) -> list[list[object]]:
    """[path, kind, mode, size, sha256 or link target] of each entry under `root`, sorted, links not followed.

    Self-contained (standard library, imports inside): its source also runs inside a sandbox.
    """
    import hashlib
    import os
    import stat

    entries: list[list[object]] = []

    def visit(folder: str, prefix: str) -> None:
        with os.scandir(folder) as found:
            for entry in sorted(found, key=lambda e: e.name):
                info, name = entry.stat(follow_symlinks=False), prefix + entry.name
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISDIR(info.st_mode):
                    entries.append([name, "d", mode, 0, ""])
                    visit(entry.path, name + "/")
                elif stat.S_ISLNK(info.st_mode):
                    entries.append([name, "l", mode, 0, os.readlink(entry.path)])
                elif stat.S_ISREG(info.st_mode):
                    digest = hashlib.sha256()
                    with open(entry.path, "rb") as file:
                        for block in iter(lambda: file.read(1 << 20), b""):
                            digest.update(block)
                    entries.append([name, "f", mode, info.st_size, digest.hexdigest()])
                else:
                    entries.append([name, "o", mode, 0, ""])

    visit(root, "")
    return entries


def manifest_digest(entries: list[list[object]]) -> str:
    """A digest of a tree's manifest entries, the tree's cache key."""
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()


def _manifest_path(folder: Path) -> Path:
    """Beside the folder, never inside it: what seeds a sandbox cannot hold its own reference."""
    return folder.with_name(folder.name + MANIFEST_SUFFIX)


def _write_manifest(folder: Path, built: Path) -> str:
    """Record the manifest of `built` (a staging folder about to become `folder`); return its digest."""
    entries = walk_tree(str(built))
    target = _manifest_path(folder)
    staging = target.with_suffix(".tmp")
    staging.write_text(json.dumps(entries, separators=(",", ":")))
    os.replace(staging, target)
    return manifest_digest(entries)


def _read_manifest(folder: Path) -> list[list[object]] | None:
    try:
        entries = json.loads(_manifest_path(folder).read_text())
    except (OSError, ValueError):
        return None
    return entries if isinstance(entries, list) else None


def describe_changes(expected: list[list[object]], found: list[list[object]], limit: int = 5) -> str:
    """The first paths that differ between two manifests, for an error message."""
    before = {str(e[0]): e for e in expected}
    after = {str(e[0]): e for e in found}
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    words = [
        f"{p} ({'added' if p not in before else 'removed' if p not in after else 'changed'})" for p in changed
    ]
    more = f" and {len(words) - limit} more" if len(words) > limit else ""
    return ", ".join(words[:limit]) + more


def _remove(folder: Path) -> None:
    """Move a tree (or venv) out of the way and delete it with its manifest; the next build makes it anew."""
    if folder.exists():
        doomed = folder.with_name(f".stale-{folder.name}-{os.getpid()}-{os.urandom(4).hex()}")
        os.replace(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    _manifest_path(folder).unlink(missing_ok=True)


def venv_requirements(instance: SWEInstance) -> list[str]:
    """The instance's requirements plus the report plugin grading needs, unless already listed."""
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in instance.requirements}
    return instance.requirements + ([] if "pytest-reportlog" in names else [REPORT_PLUGIN])


def _venv_key(instance: SWEInstance) -> str:
    with_pip = bool(instance.install_cmd)  # installs need pip in the venv; tests alone do not
    spec = json.dumps([venv_requirements(instance), instance.python_path, with_pip], sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def build_venv(instance: SWEInstance, cache: Path) -> Path:
    """A venv on the sandbox's Python with the requirements, the repository on its path, no scripts' paths."""
    target = cache / "venvs" / _venv_key(instance)
    with paths.build_lock(target):
        if (target / "pyvenv.cfg").is_file():
            if _read_manifest(target) == walk_tree(str(target)):
                return target
            _remove(target)  # changed (or built before manifests): every tree copied from it would be too
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".venv-"))
        try:
            pip_flag = [] if instance.install_cmd else ["--without-pip"]
            subprocess.run([SANDBOX_PYTHON, "-m", "venv", *pip_flag, str(staging)], check=True)
            if requirements := venv_requirements(instance):
                pip = [sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python"), "install"]
                result = subprocess.run(
                    [*pip, "-q", "--disable-pip-version-check", *requirements],
                    capture_output=True,
                    text=True,
                )
                if result.returncode != 0:
                    raise SourceError(f"pip install {requirements} failed: {result.stderr[-800:]}")
            _finish_venv(staging, instance)
            _write_manifest(target, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _finish_venv(venv: Path, instance: SWEInstance) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    paths = [str(PurePosixPath(REPO_DIR) / p) for p in instance.python_path]
    (site / "orchard_repo.pth").write_text("\n".join(paths) + "\n")
    for hook in SHADOWED_HOOKS:
        (site / hook).write_text(
            '"""Placeholder: keeps repository files of this name from running at startup."""\n'
        )
    # Console scripts were written with this host path in their shebang; inside the sandbox the venv
    # lives at VENV_DIR, which is first on PATH.
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
                script.write_bytes(b"#!/usr/bin/env python3\n" + data.split(b"\n", 1)[1])


def prepare(instance: SWEInstance, cache: Path | None = None) -> PreparedTree:
    """Build (once, under a lock) or find the prepared tree of one instance."""
    cache = cache or cache_root()
    identity = json.dumps([instance.base_commit, _venv_key(instance), instance.install_cmd]).encode()
    target = cache / "trees" / f"{instance.instance_id}-{hashlib.sha256(identity).hexdigest()[:8]}"
    head_file = target / ".orchard-head"
    with paths.build_lock(target):
        entries = _read_manifest(target)
        if head_file.is_file() and entries is not None:
            return PreparedTree(target, head_file.read_text().strip(), manifest_digest(entries))
        _remove(target)  # half-built, or from before manifests
        venv = build_venv(instance, cache)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{instance.instance_id}-"))
        try:
            head = materialize(instance, staging / "repo", cache)
            # A copy, not hard links (`cp -al`): a write through a shared inode would reach the venv every
            # tree is copied from and every tree sharing it. reflink=auto keeps it cheap where it can.
            subprocess.run(["cp", "-a", "--reflink=auto", str(venv), str(staging / ".venv")], check=True)
            if instance.install_cmd:
                staging = run_install(instance, PreparedTree(staging, head))
            (staging / ".orchard-head").write_text(head + "\n")
            digest = _write_manifest(target, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return PreparedTree(target, head, digest)


_CHECK_SCRIPT = """
import hashlib, json, sys
entries = walk_tree(sys.argv[1])
text = json.dumps(entries, separators=(",", ":"))
print("match" if hashlib.sha256(text.encode()).hexdigest() == sys.argv[2] else text)
"""


def check_tree(sandbox: Sandbox, tree: PreparedTree) -> None:
    """Raise TreeChanged (and remove the tree, so the next `prepare` builds it anew) unless the sandbox's
    workdir holds exactly the prepared tree. Checked inside the sandbox: whatever seeded this copy of it (a
    live overlay, a copy, an upload), the grader starts from what it verified. When only the copy differs
    (the tree on the host still matches its manifest) it is a SandboxError and the tree stays: removing
    it would pull it from under the other episodes being seeded from it."""
    if not tree.digest:
        raise TreeChanged(f"{tree.path} has no manifest: only trees from prepare() can be graded")
    # Only the digest comes back when it matches: the listing may exceed a small output cap.
    script = inspect.getsource(walk_tree) + _CHECK_SCRIPT
    command = f"{SANDBOX_PYTHON} -I -S -B -c {shlex.quote(script)} {WORKDIR} {tree.digest}"
    result = sandbox.exec(command, timeout=300, session=False)
    if result.exit_code != 0:
        raise SandboxError(f"could not read the sandbox's tree: {result.output.strip()[-500:]}")
    if result.stdout.strip() == "match":
        return
    found = None if result.truncated else json.loads(result.stdout)
    intact = False
    with paths.build_lock(tree.path):
        expected = _read_manifest(tree.path)
        if expected is not None and manifest_digest(expected) == tree.digest:  # not one rebuilt meanwhile
            # Only the copy is wrong (an upload cut short): the tree stays, since episodes still use it.
            intact = tree.path.is_dir() and walk_tree(str(tree.path)) == expected
            if not intact:
                _remove(tree.path)
    if expected is None:
        detail = "its manifest changed too"
    else:
        detail = describe_changes(expected, found) if found is not None else "a listing too long to show"
    if intact:
        raise SandboxError(
            f"the sandbox's copy of the prepared tree {tree.path.name} differs from it ({detail}) while the "
            "tree itself is intact: copying it into the sandbox went wrong; refusing to grade from it"
        )
    raise TreeChanged(
        f"the prepared tree {tree.path.name} changed since it was prepared ({detail}); it was removed "
        "and will be prepared again: refusing to grade from it"
    )


def run_install(instance: SWEInstance, tree: PreparedTree) -> Path:
    """Run `install_cmd` in a local sandbox seeded with the tree and return the folder holding the result.

    It runs sandboxed (the command comes from an instance file) but with network, as installs need an
    index; whatever it writes under the workdir, the venv included, becomes part of the prepared tree.
    """
    from orchard_envs.sandbox import get_backend

    backend = get_backend("local")
    result_dir = Path(tempfile.mkdtemp(dir=tree.path.parent, prefix=f".{instance.instance_id}-installed-"))
    try:
        with backend.create(sandbox_spec(tree, network=True, ttl=INSTALL_TIMEOUT + 60)) as sandbox:
            command = f"cd {REPO_DIR} && {instance.install_cmd}"
            run = sandbox.exec(command, timeout=INSTALL_TIMEOUT, env={"PIP_NO_INDEX": "0"})
            if run.exit_code != 0:
                detail = run.output.strip()[-800:]
                raise SourceError(f"install_cmd of {instance.instance_id} exited {run.exit_code}: {detail}")
            # The "tar" filter, not "data": a venv links to /usr/bin/python3 by absolute path.
            with tarfile.open(fileobj=io.BytesIO(sandbox.download_tar(WORKDIR))) as tar:
                tar.extractall(result_dir, filter="tar")
    except BaseException:
        shutil.rmtree(result_dir, ignore_errors=True)
        raise
    finally:
        backend.close()
    shutil.rmtree(tree.path, ignore_errors=True)
    return result_dir


def sandbox_spec(tree: PreparedTree, **overrides: object) -> SandboxSpec:
    """The spec every SWE sandbox uses: the prepared tree as workdir seed, the venv first on PATH."""
    env = {**SANDBOX_ENV, **overrides.pop("env", {})}  # type: ignore[dict-item]
    return SandboxSpec(workdir=WORKDIR, base_dir=tree.path, env=env, **overrides)
