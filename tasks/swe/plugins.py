"""The pytest plugins a library's own test configuration needs, found before its venv is built.

A library's `addopts` (`--cov`, `-n auto`, `--timeout`), a `filterwarnings` entry naming a plugin's warning
class, or `required_plugins` make pytest stop with a usage error (exit 4) when the plugin is missing, and
the grader loads no plugin it is not told about (autoload is off; `pytest_plugins` are loaded with -p).
So the builder reads the configuration pytest would read and adds each plugin, pinned, to the task venv's
requirements and its module to the instance's `pytest_plugins`.
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.swe.instance import SWEInstance


@dataclass(frozen=True)
class Plugin:
    """A pytest plugin as the task venv installs it and the grader loads it."""

    dist: str  # distribution name, as `required_plugins` spells it
    requirements: tuple[str, ...]  # pinned pip specs (the plugin and what it imports)
    module: str  # loaded with -p
    test_args: str = ""  # appended to the test command


# Pins that install from PyPI on the sandbox's Python (3.11) beside the default pytest 8.3.4.
# pytest-cov is loaded with `--no-cov`: the library's `--cov` options parse, but no coverage is measured,
# so no `.coverage` file lands in the repository and no `--cov-fail-under` turns a pass into a failure.
KNOWN: dict[str, Plugin] = {
    "pytest-cov": Plugin(
        "pytest-cov", ("pytest-cov==6.0.0", "coverage==7.6.10"), "pytest_cov.plugin", "--no-cov"
    ),
    "pytest-xdist": Plugin("pytest-xdist", ("pytest-xdist==3.6.1", "execnet==2.1.1"), "xdist.plugin"),
    "pytest-timeout": Plugin("pytest-timeout", ("pytest-timeout==2.3.1",), "pytest_timeout"),
}
# -p names (module or entry-point name) and warning-class module prefixes of each known plugin.
P_NAMES = {
    "pytest_cov": "pytest-cov",
    "pytest_cov.plugin": "pytest-cov",
    "xdist": "pytest-xdist",
    "xdist.plugin": "pytest-xdist",
    "timeout": "pytest-timeout",
    "pytest_timeout": "pytest-timeout",
}
WARNING_MODULES = {"coverage": "pytest-cov", "pytest_cov": "pytest-cov", "xdist": "pytest-xdist"}
OPTION_PREFIXES = {
    "--cov": "pytest-cov",
    "--no-cov": "pytest-cov",
    "--numprocesses": "pytest-xdist",
    "--maxprocesses": "pytest-xdist",
    "--dist": "pytest-xdist",
    "--timeout": "pytest-timeout",
}
INI_KEYS = {
    "timeout": "pytest-timeout",
    "timeout_method": "pytest-timeout",
    "timeout_func_only": "pytest-timeout",
}


def pytest_ini(repo: Path) -> dict[str, Any]:
    """The ini options of the configuration file pytest would pick in `repo` (its rootdir), or {}."""
    for name, section in (("pytest.ini", "pytest"), (".pytest.ini", "pytest")):
        if (repo / name).is_file():
            return _ini_section(repo / name, section) or {}
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        try:
            options = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            options = {}
        found = options.get("tool", {}).get("pytest", {}).get("ini_options")
        if isinstance(found, dict):
            return found
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        if (repo / name).is_file() and (found := _ini_section(repo / name, section)) is not None:
            return found
    return {}


def _ini_section(path: Path, section: str) -> dict[str, Any] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    return dict(parser[section]) if parser.has_section(section) else None


def _args(value: Any) -> list[str]:
    """An ini value of pytest's "args" type: a shell-split string (ini) or a list (pyproject)."""
    if isinstance(value, list):
        return [str(item) for item in value]
    try:
        return shlex.split(str(value or ""))
    except ValueError:
        return str(value or "").split()


def _lines(value: Any) -> list[str]:
    """An ini value of pytest's "linelist" type."""
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def _from_addopts(args: list[str]) -> set[str]:
    found = set()
    for number, arg in enumerate(args):
        if arg == "-p" and number + 1 < len(args):
            found.add(P_NAMES.get(args[number + 1], ""))
        elif arg.startswith("-p") and not arg.startswith("--"):
            found.add(P_NAMES.get(arg[2:].lstrip("="), ""))
        elif re.fullmatch(r"-n(=?\S+)?", arg):
            found.add("pytest-xdist")
        else:
            option = arg.split("=", 1)[0]
            found |= {dist for prefix, dist in OPTION_PREFIXES.items() if option.startswith(prefix)}
    return found - {""}


def _from_filterwarnings(entries: list[str]) -> set[str]:
    """Plugins whose warning classes a `filterwarnings` entry (action:message:category:...) names."""
    found = set()
    for entry in entries:
        parts = entry.split(":")
        category = parts[2].strip() if len(parts) > 2 else ""
        root = category.split(".", 1)[0]
        if "." in category and root in WARNING_MODULES:
            found.add(WARNING_MODULES[root])
    return found


def requirement_name(spec: str) -> str:
    """The normalized distribution name of a pip spec or a `required_plugins` entry."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; @]", spec.strip(), maxsplit=1)[0]).lower()


@dataclass(frozen=True)
class Needs:
    """What a repository's pytest configuration needs: known plugins, and `required_plugins` entries."""

    plugins: list[Plugin]
    required: list[str]


def needed_plugins(repo: Path) -> Needs:
    """The known plugins the repository's pytest configuration needs, and its `required_plugins`."""
    ini = pytest_ini(repo)
    names = _from_addopts(_args(ini.get("addopts")))
    names |= _from_filterwarnings(_lines(ini.get("filterwarnings")))
    names |= {dist for key, dist in INI_KEYS.items() if key in ini}
    required = [requirement_name(entry) for entry in _args(ini.get("required_plugins"))]
    names |= {name for name in required if name in KNOWN}
    return Needs([KNOWN[name] for name in sorted(names)], required)


def with_plugins(instance: SWEInstance, repo: Path) -> SWEInstance:
    """The instance with the plugins `repo`'s test configuration needs in its requirements (pinned, unless
    already listed), its `pytest_plugins` (so grading loads them) and their test arguments.

    `required_plugins` is switched off in the test command (`-o required_plugins=`): pytest checks it
    against plugins loaded by entry point, and grading loads every plugin with -p instead. An entry with no
    pin here must be in the library's requirements, its module in `pytest_plugins`; else ConfigError.
    """
    needs = needed_plugins(repo)
    listed = {requirement_name(spec) for spec in instance.requirements}
    if unknown := [name for name in needs.required if name not in KNOWN and name not in listed]:
        raise ConfigError(
            f"{instance.repo}'s pytest configuration requires {', '.join(unknown)} (required_plugins), "
            "which the builder has no pin for: add it to the library's `requirements` and its module to "
            "`pytest_plugins` in the build config"
        )
    requirements = list(instance.requirements)
    plugins = list(instance.pytest_plugins)
    args = [instance.test_cmd]
    for plugin in needs.plugins:
        if plugin.dist not in listed:
            requirements += [spec for spec in plugin.requirements if requirement_name(spec) not in listed]
        if plugin.module not in plugins:
            plugins.append(plugin.module)
        if plugin.test_args and plugin.test_args not in instance.test_cmd.split():
            args.append(plugin.test_args)
    if needs.required and "required_plugins=" not in instance.test_cmd:
        args.append("-o required_plugins=")
    return instance.model_copy(
        update={"requirements": requirements, "pytest_plugins": plugins, "test_cmd": " ".join(args)}
    )
