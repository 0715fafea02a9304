"""Suites the bench can run, whatever env they belong to: a name or a user's file -> env id + tasks."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from orchard_envs.errors import ConfigError, OrchardError

BUNDLED = {
    "swe-mini": ("orchard/SWE-v0", "80 real bugs injected into 10 PyPI libraries, graded by their tests"),
    "claw-mini": ("orchard/Claw-v0", "180 personal-assistant tool tasks over 7 mock services, 10 families"),
    "web-mini": ("orchard/Web-v0", "144 browser tasks on 4 self-hosted sites (shop, mail, travel, wiki)"),
    "miniwob": ("orchard/Web-v0", "the MiniWoB++ tasks of the miniwob package, reward read from the page"),
    "desktop-mini": ("orchard/Desktop-v0", "64 tasks over mousepad, gnumeric, pcmanfm and a terminal"),
}
GUI_ENVS = ("orchard/Web-v0", "orchard/Desktop-v0")


@dataclass(frozen=True)
class Task:
    """One task of a suite: its id, category and split."""

    task_id: str
    category: str
    split: str | None


@dataclass(frozen=True)
class Suite:
    """A named list of tasks for one env; `version` changes whenever a task does."""

    name: str
    env_id: str
    tasks: tuple[Task, ...]
    version: str  # sha256 of the tasks' content: a resumed run must see the same suite

    def env_kwargs(self, split: str | None, task_ids: list[str] | None) -> dict[str, object]:
        """gym.make keywords that select this suite (the envs name their task filter differently)."""
        kwargs: dict[str, object] = {"suite": self.name, "split": split}
        if task_ids:
            kwargs["instance_ids" if self.env_id == "orchard/SWE-v0" else "task_ids"] = task_ids
        return kwargs


def load(name_or_path: str, split: str | None = None) -> Suite:
    """A bundled suite by name, or a user's file: a SWE instance file or a Claw task file/folder."""
    env_id = BUNDLED.get(name_or_path, (None,))[0] or _guess_env(Path(name_or_path))
    try:
        if env_id == "orchard/SWE-v0":
            from orchard_envs.tasks.swe.instance import load_suite as load_swe

            loaded = load_swe(name_or_path, split)
            tasks = [Task(i.instance_id, i.repo, i.split) for i in loaded]
            content = [i.model_dump(mode="json") for i in loaded]
        elif env_id in GUI_ENVS:
            tasks, content = _gui_suite(name_or_path, split)
        else:
            from orchard_envs.tasks.claw.task import load_suite as load_claw

            loaded_claw = load_claw(name_or_path, split)
            tasks = [Task(t.task_id, t.category, t.split) for t in loaded_claw]
            content = [t.model_dump(mode="json") for t in loaded_claw]
    except OrchardError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read suite {name_or_path!r}: {exc}") from exc
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return Suite(suite_name(name_or_path), env_id, tuple(tasks), digest)


def _gui_suite(name: str, split: str | None) -> tuple[list[Task], list[dict]]:
    """A bundled web or desktop suite's tasks (each family is its category) and their content."""
    if name == "miniwob":
        from orchard_envs.tasks.web.miniwob import load_suite as load_miniwob

        loaded: list = load_miniwob(split)
    elif BUNDLED[name][0] == "orchard/Desktop-v0":
        from orchard_envs.tasks.desktop.catalog import load_suite as load_desktop

        loaded = load_desktop(name, split)
    else:
        from orchard_envs.tasks.web.catalog import load_suite as load_web

        loaded = load_web(name, split)
    return [Task(t.task_id, t.family, t.split) for t in loaded], [dataclasses.asdict(t) for t in loaded]


def suite_name(name_or_path: str) -> str:
    """How a run records its suite: a bundled name as is, a file as its resolved path, so a resume from
    another folder (`swe/my.jsonl` there, `my.jsonl` here) is recognised as the same suite."""
    if name_or_path in BUNDLED:
        return name_or_path
    return str(Path(name_or_path).expanduser().resolve())


def looks_like_path(name: str) -> bool:
    """A suite argument meant as a file: it has a folder part or a file suffix (`my.jsonl`, `./tasks`)."""
    path = Path(name)
    return len(path.parts) > 1 or bool(path.suffix) or name.startswith((".", "~"))


def _guess_env(path: Path) -> str:
    if not path.exists():
        if looks_like_path(str(path)):
            raise ConfigError(
                f"no such file: {path} (--suite takes a bundled name or an existing suite file)"
            )
        close = difflib.get_close_matches(str(path), list(BUNDLED), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown suite {str(path)!r}{hint}: use a bundled one ({', '.join(BUNDLED)}) or a path to a "
            "suite file"
        )
    if path.is_dir() or path.suffix in (".yaml", ".yml"):
        return "orchard/Claw-v0"
    with path.open() as handle:
        first = handle.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line 1 is not JSON ({exc.msg}); a suite is one task per line") from None
    if isinstance(row, dict) and "instance_id" in row:
        return "orchard/SWE-v0"
    if isinstance(row, dict) and "task_id" in row:
        return "orchard/Claw-v0"
    raise ConfigError(f"{path}: neither a SWE instance file (instance_id) nor a Claw suite (task_id)")
