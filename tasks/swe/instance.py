"""The SWE instance format: SWE-bench's fields plus where the repository comes from and how to test it.

An instance file is JSONL (one object per line), a JSON list, or Parquet, so SWE-bench's own files load
unchanged; ours add `source` (a pinned PyPI sdist or a local git repository) and the test command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchard_envs.errors import ConfigError

SUITES_DIR = Path(__file__).parent / "data"
DEFAULT_TEST_CMD = "python -m pytest -p no:cacheprovider -q"
# The grader reads outcomes from pytest-reportlog's file, so every task venv gets it.
REPORT_PLUGIN = "pytest-reportlog==1.0.0"
DEFAULT_REQUIREMENTS = ("pytest==8.3.4", REPORT_PLUGIN)


class PyPISource(BaseModel):
    """A source distribution pinned by name, version and sha256 (any index URL pip could use works)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["pypi"] = "pypi"
    name: str
    version: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    index_url: str = "https://pypi.org/simple"


class GitSource(BaseModel):
    """A git repository on this machine; `path` is relative to the instance file (or absolute)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["git"] = "git"
    path: str


Source = Annotated[PyPISource | GitSource, Field(discriminator="type")]


class SWEInstance(BaseModel):
    """One task: a repository at `base_commit`, a bug report, the gold fix, and the tests that judge it."""

    model_config = ConfigDict(extra="allow")  # SWE-bench rows carry more fields (hints_text, created_at, ...)

    instance_id: str = Field(min_length=1)
    repo: str
    base_commit: str
    patch: str = Field(description="the gold patch (non-test files)")
    test_patch: str = Field("", description="applied before grading; SWE-smith-style instances need none")
    problem_statement: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str] = Field(default_factory=list)
    version: str = ""
    split: str = ""
    source: Source | None = Field(
        None, description="where the repository comes from; None: not runnable here"
    )
    requirements: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REQUIREMENTS),
        description="pip specs installed into the task's venv (pytest-reportlog is always added)",
    )
    python_path: list[str] = Field(
        default_factory=lambda: ["."], description="repository folders importable from the venv (e.g. 'src')"
    )
    install_cmd: str = Field(
        "", description="run once from the repository root, network on, when the tree is prepared"
    )
    test_cmd: str = Field(DEFAULT_TEST_CMD, description="runs the tests from the repository root")
    pytest_plugins: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]] = Field(
        default_factory=list,
        description="modules of the pytest plugins the tests need, loaded with -p: grading turns plugin "
        "autoload off, so no installed (or agent-made) distribution's `pytest11` entry point loads",
    )
    origin: Path | None = Field(None, exclude=True, description="folder of the file this instance came from")

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        """SWE-bench stores these lists as JSON strings."""
        return json.loads(value) if isinstance(value, str) else value

    @property
    def runnable(self) -> bool:
        """Whether the instance has a source to build a sandbox from."""
        return self.source is not None

    def public_metadata(self) -> dict[str, Any]:
        """What an agent may see: never the gold patch or the test lists."""
        return {
            "instance_id": self.instance_id,
            "repo": self.repo,
            "version": self.version,
            "base_commit": self.base_commit,
            "split": self.split,
        }

    def git_source_path(self) -> Path:
        """The git source's path; a relative one is taken from the instance's origin (else the cwd)."""
        assert isinstance(self.source, GitSource)
        path = Path(self.source.path).expanduser()
        return path if path.is_absolute() else (self.origin or Path.cwd()) / path


def suite_path(suite: str | Path) -> Path:
    """A bundled suite name ('swe-mini') or a path to an instance file."""
    bundled = SUITES_DIR / f"{suite}.jsonl"
    if isinstance(suite, str) and bundled.is_file():
        return bundled
    path = Path(suite).expanduser()
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.jsonl"))
        raise ConfigError(
            f"no SWE suite {str(suite)!r}: give a bundled suite name ({', '.join(known)}) "
            "or the path of a .jsonl/.json/.parquet instance file"
        )
    return path


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise ConfigError(
                    f"{path} is Parquet: install pyarrow (pip install pyarrow) to read it"
                ) from None
            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json" or text.lstrip().startswith("["):
            rows = json.loads(text)
            return rows if isinstance(rows, list) else [rows]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON/JSONL ({exc}); one instance object per line") from None


def load_suite(suite: str | Path, split: str | None = None) -> list[SWEInstance]:
    """Load every instance of a suite, optionally one split; errors name the instance and field."""
    path = suite_path(suite)
    instances = []
    for number, row in enumerate(_read_rows(path), 1):
        try:
            instance = SWEInstance.model_validate({**row, "origin": path.parent.resolve()})
        except ValidationError as exc:
            where = row.get("instance_id", f"row {number}") if isinstance(row, dict) else f"row {number}"
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: instance {where} is invalid: {problems}") from None
        if split is None or instance.split == split:
            instances.append(instance)
    if not instances:
        raise ConfigError(f"{path} has no instances" + (f" in split {split!r}" if split else ""))
    ids = [i.instance_id for i in instances]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"{path}: duplicate instance_id {', '.join(dupes[:5])}")
    return instances
