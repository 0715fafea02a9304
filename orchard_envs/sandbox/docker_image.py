"""Build the offline base image `orchard-base:bookworm` that the Docker backend's 'default' image maps to.

The image is made without any registry: debootstrap installs a minimal Debian bookworm (plus python3,
git, ca-certificates and procps) from the apt mirror this machine already uses, the unprivileged
sandbox user `orchard` (uid SANDBOX_UID) is added, and the tree is streamed into `docker import`. The
mirror is read from the machine's apt sources at run time, so the same code works behind whatever
mirror or proxy a site configures.

Run `python -m orchard_envs.sandbox.docker_image` once per Docker host (about a minute); later calls
find the image and return at once; an image of an older BASE_VERSION (its label) is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchard_envs.errors import BackendUnavailable

BASE_IMAGE = "orchard-base:bookworm"
# Version 2 added the sandbox user; the docker backend refuses an older default image.
BASE_VERSION = "2"
VERSION_LABEL = "orchard.base-version"
SUITE = "bookworm"
PACKAGES = ("python3", "git", "ca-certificates", "procps")
APT_SOURCES_LIST = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
# The sandbox's processes run as this uid (and gid) unless `SandboxSpec.root`. A uid no host account
# normally has: per-uid kernel limits (RLIMIT_NPROC, say) are not shared with a person's processes.
# Its home is /root, the home area on every backend, so paths are the same for root and the user.
SANDBOX_USER = "orchard"
SANDBOX_UID = 10001
SANDBOX_HOME = "/root"
LOCK_PATH = Path(tempfile.gettempdir()) / "orchard-base-image.lock"
# Image config for `docker import` (an imported tree has none): a sane PATH, UTF-8, a shell.
IMAGE_CHANGES = [
    f"LABEL {VERSION_LABEL}={BASE_VERSION}",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
]
_CHUNK = 1024 * 1024

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default progress sink: say nothing."""


# -- mirror discovery --------------------------------------------------------------------------------
def _deb822_mirrors(text: str, suite: str) -> list[str]:
    """URIs of enabled deb822 stanzas (`*.sources`) that serve exactly `suite`."""
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        if suite in fields.get("suites", "").split():
            found.extend(fields.get("uris", "").split())
    return found


def _one_line_mirrors(text: str, suite: str) -> list[str]:
    """URIs of one-line `deb [options] URI suite components` entries (`sources.list`) for `suite`."""
    found = []
    for raw in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", raw.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb" and line[2] == suite:
            found.append(line[1])
    return found


def find_mirror(suite: str = SUITE) -> str:
    """The first apt mirror URI this machine uses for `suite`, read from its apt sources."""
    candidates: list[str] = []
    if APT_SOURCES_DIR.is_dir():
        for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
            candidates += _deb822_mirrors(path.read_text(errors="replace"), suite)
        for path in sorted(APT_SOURCES_DIR.glob("*.list")):
            candidates += _one_line_mirrors(path.read_text(errors="replace"), suite)
    if APT_SOURCES_LIST.is_file():
        candidates += _one_line_mirrors(APT_SOURCES_LIST.read_text(errors="replace"), suite)
    usable = [uri for uri in candidates if uri.startswith(("http://", "https://", "file:/"))]
    if not usable:
        raise BackendUnavailable(
            f"no apt source for Debian {suite!r} found in {APT_SOURCES_DIR}/*.sources or "
            f"{APT_SOURCES_LIST}; add one (the mirror you install Debian packages from) and retry"
        )
    return usable[0]


# -- docker ----------------------------------------------------------------------------------------
def docker_client() -> Any:
    """A Docker SDK client that has answered a ping, or BackendUnavailable saying how to get one."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a core dependency
        raise BackendUnavailable("the 'docker' Python package is missing: pip install 'docker>=7'") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        raise BackendUnavailable(
            f"cannot reach the Docker Engine ({exc}); install and start it, e.g. "
            "`apt-get install docker.io && systemctl start docker` (or `dockerd &`), and make sure "
            "this user may use /var/run/docker.sock (or set DOCKER_HOST)"
        ) from exc
    return client


def image_version(client: Any, name: str = BASE_IMAGE) -> str | None:
    """The orchard base-version label of a local image, '' if unlabelled, None if it is missing."""
    import docker.errors

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    return (image.labels or {}).get(VERSION_LABEL, "")


def _image_id(client: Any, name: str = BASE_IMAGE) -> str | None:
    import docker.errors

    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        return None


def _remove_quietly(client: Any, image_id: str) -> None:
    """Drop the image a rebuild replaced; one still used by a container simply stays."""
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(image_id)


# -- build -----------------------------------------------------------------------------------------
def _debootstrap(root: Path, mirror: str, progress: Progress) -> None:
    """Install the minimal system into `root`, reporting each debootstrap stage once (not per package)."""
    command = [
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror,
    ]
    progress(f"running: {' '.join(command)}")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    stage = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail[-30:], line.rstrip()]
        stage = _report_stage(line, stage, progress)
    if proc.wait() != 0:
        details = "\n".join(tail)
        raise BackendUnavailable(f"debootstrap failed (exit {proc.returncode}); its last lines:\n{details}")


_PER_PACKAGE = ("Retrieving", "Validating", "Extracting", "Unpacking", "Configuring")


def _report_stage(line: str, stage: str, progress: Progress) -> str:
    """Pass on debootstrap's stage lines, folding its per-package lines into one line per kind."""
    words = line.split()
    if len(words) < 2 or words[0] != "I:":
        return stage
    verb = words[1]
    one_package = len(words) == 3 or (len(words) == 4 and words[3][:1].isdigit())  # "name[...] [version]"
    if verb in _PER_PACKAGE and one_package:
        if verb != "Validating" and verb != stage:
            progress(f"  debootstrap: {verb.lower()} packages")
            return verb
        return stage
    progress(f"  debootstrap: {' '.join(words[1:])}")
    return ""


def _slim(root: Path) -> None:
    """Drop the apt package cache and lists: they are only dead weight in an offline image."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()


def _add_sandbox_user(root: Path) -> None:
    """Name the sandbox uid in the tree's user database, so `whoami`, git and `getpass` work for it."""
    uid = SANDBOX_UID
    entries = {
        "etc/passwd": f"{SANDBOX_USER}:x:{uid}:{uid}:Orchard sandbox:{SANDBOX_HOME}:/bin/bash",
        "etc/group": f"{SANDBOX_USER}:x:{uid}:",
        "etc/shadow": f"{SANDBOX_USER}:!::0:99999:7:::",  # no password: nobody logs in as it
        "etc/gshadow": f"{SANDBOX_USER}:!::",
    }
    for name, line in entries.items():
        path = root / name
        text = path.read_text() if path.exists() else ""
        if not any(entry.split(":", 1)[0] == SANDBOX_USER for entry in text.splitlines()):
            path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")


def _tar_stream(root: Path) -> Iterator[bytes]:
    """A tar of `root` with numeric owners, produced by GNU tar and yielded in chunks."""
    proc = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    with proc.stdout:
        while chunk := proc.stdout.read(_CHUNK):
            yield chunk
    if proc.wait() != 0:
        message = proc.stderr.read().decode(errors="replace")
        raise BackendUnavailable(f"tar of the base tree failed: {message}")


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise BackendUnavailable("building the base image runs debootstrap, which needs root")
    if shutil.which("debootstrap") is None:
        raise BackendUnavailable("debootstrap is missing; install it with `apt-get install debootstrap`")


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build per host at a time: parallel test workers wait for the first and then reuse it."""
    with open(LOCK_PATH, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_base_image(force: bool = False, progress: Progress = _quiet) -> str:
    """Make sure `orchard-base:bookworm` exists (building it if missing or `force`); return its name."""
    client = docker_client()
    if not force and image_version(client) == BASE_VERSION:
        return BASE_IMAGE
    _check_tools()
    with _build_lock():
        if not force and image_version(client) == BASE_VERSION:  # another process built it meanwhile
            progress(f"{BASE_IMAGE} was built by another process")
            return BASE_IMAGE
        previous = _image_id(client)
        mirror = find_mirror()
        progress(f"building {BASE_IMAGE} from {mirror}")
        with tempfile.TemporaryDirectory(prefix="orchard-base-") as tmp:
            root = Path(tmp) / "rootfs"
            _debootstrap(root, mirror, progress)
            _slim(root)
            _add_sandbox_user(root)
            progress(f"importing the tree into Docker as {BASE_IMAGE}")
            repository, _, tag = BASE_IMAGE.partition(":")
            client.api.import_image_from_data(
                _tar_stream(root), repository=repository, tag=tag, changes=IMAGE_CHANGES
            )
    if image_version(client) != BASE_VERSION:
        raise BackendUnavailable(f"docker import finished but {BASE_IMAGE} is not there with its label")
    if previous and previous != _image_id(client):
        _remove_quietly(client, previous)
    progress(f"built {BASE_IMAGE}")
    return BASE_IMAGE


def main(argv: list[str] | None = None) -> int:
    """CLI: build the base image (`--force` rebuilds it), printing progress lines."""
    args = sys.argv[1:] if argv is None else argv
    force = "--force" in args

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        name = build_base_image(force=force, progress=say)
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name} is ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
