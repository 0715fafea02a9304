"""What a CLI harness is to Orchard: files to install in the sandbox, and one shell command to run.

The command runs in the sandbox as its own process with these in its environment (docs/external-harnesses.md):
`OPENAI_BASE_URL` and `OPENAI_API_KEY` (the proxy, through the sandbox's forwarder), `ORCHARD_TASK_FILE`
(the task instruction, a text file) and `ORCHARD_WORKDIR` (where to work; also its cwd).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, ClassVar

from orchard_envs.errors import ConfigError

TOOL_DIR = "/tmp/orchard-harness"  # where a harness's files go in the sandbox (outside the graded repository)


class CLIHarness:
    """One external harness; subclasses set `name` and override `install` and `command`."""

    name: ClassVar[str] = "abstract"

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigError(f"the {self.name} harness takes no options; got {', '.join(sorted(options))}")

    def install(self, sandbox: Any, workdir: str) -> None:
        """Put the harness's files into the sandbox (offline: the sandbox has no network)."""

    def command(self) -> str:
        """The shell command that runs the harness to the end."""
        raise NotImplementedError

    def harness_calls(self, sandbox: Any) -> int | None:
        """How many model calls the harness's own trajectory shows, where it writes one; else None."""
        return None


class CommandHarness(CLIHarness):
    """Any command (`command=...`), with the files of a host folder (`files=DIR`) copied to TOOL_DIR."""

    name = "command"

    def __init__(self, command: str = "", files: str | None = None) -> None:
        if not command:
            raise ConfigError(
                "external:command needs command=... (e.g. command='bash /tmp/orchard-harness/a.sh')"
            )
        self._command, self.files = command, Path(files) if files else None
        if self.files is not None and not self.files.is_dir():
            raise ConfigError(f"external:command files={files!r} is not a folder")

    def install(self, sandbox: Any, workdir: str) -> None:
        """Copy `files` into the sandbox."""
        if self.files is not None:
            sandbox.upload_dir(self.files, TOOL_DIR)

    def command(self) -> str:
        """The command as given."""
        return self._command


def quoted(*parts: str) -> str:
    """A shell command line from words."""
    return " ".join(shlex.quote(part) for part in parts)
