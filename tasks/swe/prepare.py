"""Prepared trees: each instance's repository and Python environment, built once and reused by every reset.

A tree is a host folder that seeds a sandbox's workdir (`SandboxSpec.base_dir`): `repo/` at the base commit
and `.venv/` with the test requirements. The local backend mounts it as an overlay's lower layer, so a
reset copies nothing; docker and remote upload it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchard_envs import paths
from orchard_envs.sandbox import SandboxSpec
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
    return paths.cache_root() / "swe"


@dataclass(frozen=True)
class PreparedTree:
    """A ready tree: `path` seeds the sandbox workdir; `head` is the base commit inside `repo/`."""

    path: Path
    head: str


def venv_requirements(instance: SWEInstance) -> list[str]:
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
            return target
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
        if head_file.is_file():
            return PreparedTree(target, head_file.read_text().strip())
        venv = build_venv(instance, cache)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{instance.instance_id}-"))
        try:
            head = materialize(instance, staging / "repo", cache)
            subprocess.run(["cp", "-al", str(venv), str(staging / ".venv")], check=True)
            if instance.install_cmd:
                staging = run_install(instance, PreparedTree(staging, head))
            (staging / ".orchard-head").write_text(head + "\n")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return PreparedTree(target, head)


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
