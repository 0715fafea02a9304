"""`external:mini-swe-agent`: the `mini-swe-agent` package from PyPI, its `mini` CLI run to completion.

Installed offline into a tool venv in the sandbox from the wheelhouse `scripts/setup.sh` downloads
(`$ORCHARD_WHEELHOUSE`, default `<cache>/wheelhouse/mini-swe-agent`), and configured through its own
config file: its builtin `mini.yaml`, then ours, which points its model at the proxy through a small model
class (OpenRouter's request code with the base URL and key read from `OPENAI_BASE_URL` / `OPENAI_API_KEY`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchard_envs.errors import ConfigError
from orchard_envs.harnesses.external_specs.base import TOOL_DIR, CLIHarness, quoted
from orchard_envs.paths import cache_root

VENV = f"{TOOL_DIR}/venv"
TRAJECTORY = f"{TOOL_DIR}/trajectory.json"

# The model class mini-swe-agent loads (`model_class` in the config): its OpenRouter client, re-pointed.
MODEL_MODULE = '''
import os
from minisweagent.models.openrouter_model import OpenRouterModel

class OrchardModel(OpenRouterModel):
    """mini-swe-agent's OpenAI-style client, sending to the Orchard proxy."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cost_tracking", "ignore_errors")
        super().__init__(**kwargs)
        self._api_url = os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions"
        self._api_key = os.environ.get("OPENAI_API_KEY", "")
'''

# Unpacks every wheel of the wheelhouse into the venv's site-packages (pure copies: no pip, no network).
UNPACK = r"""
import pathlib, sys, sysconfig, zipfile
site = pathlib.Path(sysconfig.get_paths(vars={"base": sys.argv[1], "platbase": sys.argv[1]})["purelib"])
for wheel in sorted(pathlib.Path(sys.argv[2]).glob("*.whl")):
    zipfile.ZipFile(wheel).extractall(site)
(site / "orchard_mswea.py").write_text(open(sys.argv[3]).read())
"""


def wheelhouse() -> Path:
    """Where setup.sh puts mini-swe-agent's wheels."""
    return Path(os.environ.get("ORCHARD_WHEELHOUSE") or cache_root() / "wheelhouse" / "mini-swe-agent")


def config(step_limit: int, command_timeout: int, workdir: str) -> dict[str, Any]:
    """Our config file's content (merged over mini-swe-agent's builtin mini.yaml)."""
    return {
        "agent": {"step_limit": step_limit, "cost_limit": 0, "mode": "yolo", "confirm_exit": False},
        "model": {
            "model_class": "orchard_mswea.OrchardModel",
            "model_name": "orchard",
            "cost_tracking": "ignore_errors",
        },
        "environment": {"environment_class": "local", "cwd": workdir, "timeout": command_timeout},
    }


class MiniSweAgent(CLIHarness):
    """mini-swe-agent's `mini` CLI, in yolo mode, exiting when it submits."""

    name = "mini-swe-agent"

    def __init__(self, step_limit: int = 50, command_timeout: int = 120) -> None:
        self.step_limit, self.command_timeout = int(step_limit), int(command_timeout)

    def install(self, sandbox: Any, workdir: str) -> None:
        """The wheelhouse into `TOOL_DIR/venv`, our model module and config file beside it."""
        wheels = wheelhouse()
        if not any(wheels.glob("mini_swe_agent-*.whl")):
            raise ConfigError(
                f"no mini-swe-agent wheels in {wheels}: run scripts/setup.sh (or set ORCHARD_WHEELHOUSE)"
            )
        sandbox.upload_dir(wheels, f"{TOOL_DIR}/wheels")
        sandbox.write_file(f"{TOOL_DIR}/orchard_mswea.py", MODEL_MODULE)
        sandbox.write_file(f"{TOOL_DIR}/unpack.py", UNPACK)
        sandbox.write_file(
            f"{TOOL_DIR}/orchard.yaml", json.dumps(config(self.step_limit, self.command_timeout, workdir))
        )
        result = sandbox.exec(
            f"python3 -m venv --without-pip {VENV} && {VENV}/bin/python {TOOL_DIR}/unpack.py {VENV} "
            f"{TOOL_DIR}/wheels {TOOL_DIR}/orchard_mswea.py && rm -rf {TOOL_DIR}/wheels",
            timeout=300,
            session=False,
        )
        if result.exit_code != 0:
            raise ConfigError(f"installing mini-swe-agent in the sandbox failed: {result.output[-2000:]}")

    def command(self) -> str:
        """`mini` with the builtin config, then ours (JSON is YAML); the task read from the task file."""
        run = quoted(
            f"{VENV}/bin/python",
            "-m",
            "minisweagent.run.mini",
            "-y",
            "--exit-immediately",
            "-c",
            "mini.yaml",
            "-c",
            f"{TOOL_DIR}/orchard.yaml",
            "-o",
            TRAJECTORY,
        )
        env = "MSWEA_CONFIGURED=true MSWEA_SILENT_STARTUP=1 MSWEA_GLOBAL_CONFIG_DIR=" + TOOL_DIR + "/config"
        return f'{env} {run} -t "$(cat "$ORCHARD_TASK_FILE")"'

    def harness_calls(self, sandbox: Any) -> int | None:
        """The assistant messages of mini-swe-agent's own trajectory file."""
        try:
            trajectory = json.loads(sandbox.read_file(TRAJECTORY))
        except Exception:
            return None
        return sum(1 for m in trajectory.get("messages", []) if m.get("role") == "assistant")
