"""Turn an instance's `source` into a git repository whose single root commit is the base commit.

A root commit with a fixed identity and date makes the commit id a pure function of the file tree, so an
instance built on one machine names the same `base_commit` on every other one, and the repository the
agent sees has no history to read the fix from.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import httpx

from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.tasks.swe.instance import GitSource, PyPISource, SWEInstance

COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "orchard",
    "GIT_AUTHOR_EMAIL": "orchard@localhost",
    "GIT_COMMITTER_NAME": "orchard",
    "GIT_COMMITTER_EMAIL": "orchard@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
# Never part of the agent's diff: build and test leftovers.
GIT_EXCLUDES = "__pycache__/\n*.pyc\n.pytest_cache/\n*.egg-info/\n.hypothesis/\n"


class SourceError(OrchardError):
    """The repository of an instance cannot be materialized (download, checksum, or commit mismatch)."""


def git(repo: Path, *args: str, input: str | None = None) -> str:
    """Run git with a fixed identity and no user config; raise SourceError with git's message on failure."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **COMMIT_ENV},
    )
    if result.returncode != 0:
        raise SourceError(f"git {' '.join(args[:2])} failed in {repo}: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def commit_tree(repo: Path) -> str:
    """Make `repo` (a plain folder) a git repository with one deterministic root commit; return its id."""
    git(repo, "init", "-q", "-b", "main")
    (repo / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text(GIT_EXCLUDES)
    git(repo, "add", "-A", ".")
    git(repo, "commit", "-q", "--no-verify", "--no-gpg-sign", "-m", "Initial commit")
    return git(repo, "rev-parse", "HEAD")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_sdist(name: str, version: str, index_url: str = "https://pypi.org/simple") -> tuple[str, str | None]:
    """The sdist's URL and published sha256 from a PEP 503 simple index (what pip reads; no JSON API)."""
    page = f"{index_url.rstrip('/')}/{_normalize(name)}/"
    try:
        html = httpx.get(page, follow_redirects=True, timeout=60).raise_for_status().text
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot read the package index {page}: {exc}") from None
    wanted = _normalize(f"{name}-{version}")
    for href in re.findall(r'href="([^"]+)"', html):
        link, _, fragment = href.partition("#")
        filename = link.rsplit("/", 1)[-1]
        if filename.endswith(".tar.gz") and _normalize(filename.removesuffix(".tar.gz")) == wanted:
            digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
            return str(httpx.URL(page).join(link)), digest
    raise SourceError(
        f"{page} lists no sdist {name}-{version}.tar.gz; check the name and version in the instance"
    )


def fetch_sdist(source: PyPISource, cache: Path) -> Path:
    """Download (once) and verify the pinned sdist; a checksum mismatch is an error, never a warning."""
    target = cache / "sdists" / f"{_normalize(source.name)}-{source.version}.tar.gz"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == source.sha256:
        return target
    url, _ = find_sdist(source.name, source.version, source.index_url)
    try:
        data = httpx.get(url, follow_redirects=True, timeout=120).raise_for_status().content
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot download {url}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise SourceError(f"{url} has sha256 {digest}, but the instance pins {source.sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    return target


def extract_sdist(archive: Path, dest: Path) -> None:
    """Unpack an sdist into `dest`, dropping its single top-level folder."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        for member in members:
            parts = Path(member.name).parts[1:]
            if not parts:
                continue
            member.name = str(Path(*parts))
            tar.extract(member, dest, filter="data")


def export_git(source_repo: Path, commit: str, dest: Path) -> None:
    """Copy the files of `commit` (not its history) out of a local repository."""
    if not (source_repo / ".git").exists() and not (source_repo / "HEAD").exists():
        raise ConfigError(f"{source_repo} is not a git repository (instance source.path)")
    archive = subprocess.run(["git", "-C", str(source_repo), "archive", commit], capture_output=True)
    if archive.returncode != 0:
        raise SourceError(f"{source_repo} has no commit {commit}: {archive.stderr.decode()[-300:]}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def materialize(instance: SWEInstance, dest: Path, cache: Path, verify: bool = True) -> str:
    """Write the instance's repository at its base commit into `dest`; return the commit id there.

    A PyPI instance's base is the sdist itself or, for injected bugs, the sdist with the gold patch
    reversed; the result must hash to `base_commit`. A git instance keeps its tree (checked by tree id)
    under a fresh root commit, so its later history, which may hold the fix, never reaches the agent.
    """
    if instance.source is None:
        raise ConfigError(
            f"instance {instance.instance_id} ({instance.repo}) has no 'source': it needs its GitHub "
            'repository, which is not reachable offline. Add "source": {"type": "git", "path": '
            '"<local clone>"} to the instance (see docs/swe.md)'
        )
    dest.mkdir(parents=True)
    if isinstance(instance.source, GitSource):
        origin = instance.git_source_path()
        export_git(origin, instance.base_commit, dest)
        expected_tree = subprocess.run(
            ["git", "-C", str(origin), "rev-parse", f"{instance.base_commit}^{{tree}}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        head = commit_tree(dest)
        if git(dest, "rev-parse", "HEAD^{tree}") != expected_tree:
            raise SourceError(f"{origin}: the exported tree of {instance.base_commit} does not match")
        return head
    extract_sdist(fetch_sdist(instance.source, cache), dest)
    pristine = commit_tree(dest)
    if pristine == instance.base_commit or (not verify and not instance.patch.strip()):
        return pristine
    try:
        git(dest, "apply", "-R", "--whitespace=nowarn", "-", input=instance.patch)
    except SourceError:
        raise SourceError(
            f"instance {instance.instance_id}: base_commit {instance.base_commit} is neither the sdist "
            f"({pristine}) nor the sdist with the gold patch reversed (the reverse patch does not apply)"
        ) from None
    shutil.rmtree(dest / ".git")
    head = commit_tree(dest)
    if verify and head != instance.base_commit:
        raise SourceError(
            f"instance {instance.instance_id}: base_commit {instance.base_commit} does not match the sdist "
            f"({pristine}) or the sdist with the gold patch reversed ({head})"
        )
    return head
