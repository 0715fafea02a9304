"""`orchard-env`: the command line of the env service. Each command is one function on `app`."""

from __future__ import annotations

import ipaddress
import socket
from typing import NoReturn

import typer

from orchard_envs.cli_support import fail as cli_fail
from orchard_envs.cli_support import typer_app
from orchard_envs.errors import OrchardError

app = typer_app("orchard-env", "Orchard env service: Orchard Env's REST API over local sandboxes.")


@app.callback()
def _root() -> None:
    """Keeps subcommands explicit (`orchard-env serve`) even while there is only one."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit with one line on stderr, prefixed `orchard-env:`."""
    cli_fail("orchard-env", message, code)


def is_loopback(host: str) -> bool:
    """True if `host` only ever reaches this machine (an IP, 'localhost' or a name resolving to loopback)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not host:
        return False  # '' binds every interface
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback needs an API key."),
    port: int = typer.Option(8080, help="TCP port."),
    api_key: str | None = typer.Option(
        None, envvar="ORCHARD_ENV_API_KEY", show_envvar=True, help="Key(s) clients send as X-API-Key."
    ),
    backend: str = typer.Option("local", help="Sandbox backend: local or docker."),
    max_sandboxes: int = typer.Option(64, help="Live sandboxes before creating answers 503."),
    max_jobs: int = typer.Option(256, help="Queued + running jobs before exec answers 503."),
    max_workers: int = typer.Option(16, help="Threads running jobs."),
    default_ttl: float = typer.Option(3600.0, help="Seconds a sandbox lives without a heartbeat."),
    max_lifetime: float = typer.Option(
        24 * 3600.0, help="Seconds a sandbox lives at most, heartbeats or not."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the env service until interrupted."""
    if not api_key and not is_loopback(host):
        fail(
            f"refusing to serve on non-loopback host {host!r} without an API key: anyone who can reach it "
            "could run commands; pass --api-key or set ORCHARD_ENV_API_KEY (or bind 127.0.0.1)"
        )
    import uvicorn

    from orchard_envs.env_service.app import create_app
    from orchard_envs.env_service.state import ServiceSettings
    from orchard_envs.sandbox import get_backend

    try:
        sandboxes = get_backend(backend)
    except OrchardError as exc:
        fail(str(exc))
    settings = ServiceSettings(
        max_sandboxes=max_sandboxes,
        max_jobs=max_jobs,
        max_workers=max_workers,
        default_ttl=default_ttl,
        max_lifetime=max_lifetime,
    )
    try:
        uvicorn.run(
            create_app(sandboxes, api_key, settings),
            host=host,
            port=port,
            log_level=log_level,
            timeout_keep_alive=120,  # as Orchard: outlive client pools' idle connections
        )
    finally:
        sandboxes.close()


@app.command("build-image")
def build_image(force: bool = typer.Option(False, help="Rebuild even if the image exists.")) -> None:
    """Build the Docker base image (Debian bookworm + python3 + git) offline, once."""
    from orchard_envs.sandbox.docker_image import build_base_image

    try:
        typer.echo(build_base_image(force=force))
    except OrchardError as exc:
        fail(str(exc))


@app.command()
def smoke(
    backend: list[str] = typer.Option(["local", "docker"], help="Backends to exercise (repeatable)."),
) -> None:
    """Exercise the sandbox layer end to end on each backend and print a table."""
    from rich.console import Console
    from rich.table import Table

    from orchard_envs.errors import unknown_name
    from orchard_envs.sandbox import BACKENDS
    from orchard_envs.sandbox.smoke import run_smoke

    for name in backend:
        if name not in BACKENDS:
            fail(str(unknown_name("sandbox backend", name, BACKENDS)))
    checks = run_smoke(backend)
    table = Table(title="orchard sandbox smoke run")
    for column in ("backend", "check", "result", "ms", "detail"):
        table.add_column(column)
    for check in checks:
        verdict = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
        table.add_row(check.backend, check.name, verdict, f"{check.ms:.1f}", check.detail)
    Console().print(table)
    failed = [c for c in checks if not c.ok]
    if failed:
        fail(f"{len(failed)} of {len(checks)} checks failed", code=1)


def main() -> None:
    """The `orchard-env` console script."""
    app()
