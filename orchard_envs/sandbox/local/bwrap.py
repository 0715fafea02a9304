"""The bubblewrap command line of a local sandbox: a private root from read-only system dirs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchard_envs.errors import ConfigError
from orchard_envs.sandbox.spec import SandboxSpec

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# With the host as root, only what programs need from /etc is visible; no host secrets.
HOST_ETC = (
    "alternatives", "bash.bashrc", "ca-certificates", "ca-certificates.conf", "gitconfig", "group",
    "host.conf", "hostname", "hosts", "inputrc", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "localtime", "mime.types", "nsswitch.conf", "os-release", "passwd", "profile", "protocols",
    "python3", "python3.11", "resolv.conf", "services", "ssl", "timezone",
)
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def system_root(image: str) -> Path:
    """'default' is the host's own system dirs; anything else must be a rootfs directory."""
    if image == "default":
        return Path("/")
    root = Path(image)
    if not (root / "usr").is_dir():
        raise ConfigError(
            f"local backend: image {image!r} is neither 'default' nor a root filesystem directory "
            "(one with usr/ inside, e.g. made by debootstrap)"
        )
    return root


def bwrap_options(
    spec: SandboxSpec, workspace: Path, tmp: Path, home: Path, ctl: Path, network: NetworkSetup | None = None
) -> list[str]:
    """bwrap's options (without the program name), handed over with `args_memfd`.

    The sandbox always gets its own network namespace; with `network` bwrap reports its pid on
    `network.info_fd` (for slirp4netns to attach to) and the sandbox gets slirp's resolver.
    """
    root = system_root(spec.image)
    argv = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--info-fd", str(network.info_fd)] if network else []
    argv += ["--hostname", "sandbox"]
    for name in SYSTEM_DIRS:
        source = root / name
        if source.is_symlink():
            argv += ["--symlink", str(source.readlink()), f"/{name}"]
        elif source.is_dir():
            argv += ["--ro-bind", str(source), f"/{name}"]
    if spec.image == "default":
        argv += ["--dir", "/etc"]
        for name in HOST_ETC:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    else:
        argv += ["--ro-bind", str(root / "etc"), "/etc"]
    if network and (spec.image == "default" or (root / "etc" / "resolv.conf").exists()):
        argv += ["--ro-bind", str(network.resolv_conf), "/etc/resolv.conf"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--bind", str(tmp), "/tmp", "--bind", str(home), "/root"]
    # Read-only: the sandbox can use the FIFOs in it but never swap them for links or files.
    argv += ["--bind", str(workspace), spec.workdir, "--ro-bind", str(ctl), "/.orchard"]
    argv += ["--chdir", spec.workdir, "--clearenv"]
    for key, value in {**DEFAULT_ENV, **spec.env}.items():
        argv += ["--setenv", key, value]
    return argv



@dataclass(frozen=True)
class NetworkSetup:
    """What bwrap needs for a networked sandbox: where to report its pid, the resolv.conf to bind."""

    info_fd: int
    resolv_conf: Path


BROKER_SHELL = ["/bin/bash", "--noprofile", "--norc", "-c"]


def args_memfd(options: list[str]) -> int:
    """bwrap's options in a memfd for `--args FD`, so the sandbox's /proc/1/cmdline holds no host path.

    bwrap reads the fd to its end and closes it before the sandbox starts.
    """
    if any("\0" in option for option in options):
        raise ConfigError("a sandbox setting (e.g. an env value) contains a NUL byte")
    fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
    os.write(fd, b"".join(option.encode() + b"\0" for option in options))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
