"""SWE-bench interoperability: run official instance files on local clones, and write predictions files.

Official SWE-bench rows (from its JSONL or Parquet files) load with `load_suite` unchanged, but they name
a GitHub repository and an evaluation Docker image rather than a `source`, so they are not runnable
offline. `attach_local_repos` points them at clones laid out the way SWE-bench's own tools lay them out
(`<repos_dir>/<owner>__<name>`), and `describe_missing` says in one message what is still missing.

`write_predictions` writes what `swebench.harness.run_evaluation --predictions_path` reads: a JSON list
(`preds.json`) or JSONL of `{instance_id, model_name_or_path, model_patch}`. Nothing here imports the
`swebench` package; it is only needed to evaluate the files with SWE-bench itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.swe.instance import GitSource, SWEInstance

PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")
BUNDLED_SUITE = "swe-mini"


def clone_dir(repos_dir: Path, repo: str) -> Path:
    """Where SWE-bench's tools keep a clone of `owner/name`: `<repos_dir>/owner__name`."""
    return Path(repos_dir).expanduser() / repo.replace("/", "__")


def _is_git_repo(path: Path) -> bool:
    """A work tree (`.git` folder or file) or a bare repository: what `export_git` can read."""
    return (path / ".git").exists() or (path / "HEAD").is_file()


def attach_local_repos(instances: Iterable[SWEInstance], repos_dir: Path) -> list[SWEInstance]:
    """Give every instance without a `source` its local clone `<repos_dir>/<owner>__<name>`, if present.

    Instances that already have a source, or whose clone is absent, come back unchanged (use
    `describe_missing` to report the latter). The path is absolute, so it does not depend on where the
    instance file lives. Whether the clone holds `base_commit` is checked when the repository is
    materialized.
    """
    repos_dir = Path(repos_dir).expanduser()
    if not repos_dir.is_dir():
        raise ConfigError(f"repos_dir {repos_dir} is not a folder of clones named <owner>__<name>")
    repos_dir = repos_dir.resolve()
    attached = []
    for instance in instances:
        clone = clone_dir(repos_dir, instance.repo)
        if instance.source is None and _is_git_repo(clone):
            instance = instance.model_copy(update={"source": GitSource(path=str(clone))})
        attached.append(instance)
    return attached


def describe_missing(instances: Iterable[SWEInstance]) -> str | None:
    """One message naming the instances that cannot run here and what to do about it; None if all can."""
    instances = list(instances)
    missing = [i for i in instances if i.source is None]
    if not missing:
        return None
    repos = Counter(i.repo for i in missing)
    listed = ", ".join(f"{repo} ({count})" for repo, count in sorted(repos.items()))
    example = sorted(repos)[0]
    noun = "instance needs its" if len(missing) == 1 else "instances need their"
    return (
        f"{len(missing)} of {len(instances)} SWE {noun} GitHub repository (SWE-bench instances run in "
        f"SWE-bench's Docker images, neither of which is reachable offline): {listed}. Either clone each "
        f"repository into one folder as <owner>__<name> (e.g. git clone https://github.com/{example} "
        f"<folder>/{example.replace('/', '__')}) and pass that folder as the repos dir, or use the "
        f"bundled '{BUNDLED_SUITE}' suite, which runs offline."
    )


def prediction_row(instance_id: str, model_name: str, patch: str | None) -> dict[str, Any]:
    """One SWE-bench prediction; a `patch` of None: the agent produced none (SWE-bench's patch_is_None)."""
    if not instance_id:
        raise ConfigError("a prediction needs a non-empty instance_id")
    if patch is not None and not isinstance(patch, str):
        raise ConfigError(f"prediction {instance_id}: model_patch must be a string (a diff) or None")
    return {"instance_id": instance_id, "model_name_or_path": model_name, "model_patch": patch}


def write_predictions(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write SWE-bench predictions: a JSON list for `.json` (preds.json), one object a line for `.jsonl`.

    The file is replaced atomically (a temporary file in the same folder, then `os.replace`), so a reader
    never sees half a file. Rows missing a key, or two rows for one instance, are a ConfigError. The
    output is ASCII (non-ASCII escaped), so it reads back under any locale's default encoding.
    """
    path = Path(path).expanduser()
    if path.suffix not in (".json", ".jsonl"):
        raise ConfigError(f"predictions file {path} must end in .json (a JSON list) or .jsonl")
    rows = [dict(row) for row in rows]
    for number, row in enumerate(rows, 1):
        absent = [key for key in PREDICTION_KEYS if key not in row]
        if absent:
            where = row.get("instance_id", f"row {number}")
            raise ConfigError(f"prediction {where} lacks {', '.join(absent)} (see prediction_row)")
    counts = Counter(row["instance_id"] for row in rows)
    dupes = sorted(str(i) for i, n in counts.items() if n > 1)
    if dupes:
        raise ConfigError(f"duplicate predictions for instance_id {', '.join(dupes[:5])}")
    if path.suffix == ".json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        text = "".join(json.dumps(row) + "\n" for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644  # mkstemp's file is 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
