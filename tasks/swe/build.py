"""`orchard-tasks swe build`: real task instances from real libraries by bug injection, as SWE-smith does.

Per library: download the pinned sdist, make it a git repository, run its tests several times, alone and
beside CPU-burning processes, and keep the ones that pass every time, inject AST mutations, keep a mutant
when it breaks at least one and at most a few tests while the rest pass, then validate it end to end
through the grader (gold patch resolves, doing nothing does not) more than once. Accepted instances are
appended to the output file as they are found.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchard_envs.errors import ConfigError
from orchard_envs.sandbox import Backend, Sandbox
from orchard_envs.tasks.swe.grading import grade, grading_spec, run_tests
from orchard_envs.tasks.swe.instance import DEFAULT_REQUIREMENTS, DEFAULT_TEST_CMD, PyPISource, SWEInstance
from orchard_envs.tasks.swe.mutate import Mutation, find_mutations, sample_mutations
from orchard_envs.tasks.swe.patches import is_protected
from orchard_envs.tasks.swe.plugins import with_plugins
from orchard_envs.tasks.swe.prepare import REPO_DIR, PreparedTree, prepare
from orchard_envs.tasks.swe.report import PASSING, TestStatus
from orchard_envs.tasks.swe.source import find_sdist, materialize
from orchard_envs.tasks.swe.statement import template_statement

Log = Callable[[str], None]
ERROR_TAIL = 1500  # characters of pytest's output quoted when a library's suite does not run
BUILD_TTL = 1800.0  # one library builds in minutes; a killed build's sandbox is reaped after this


class LibrarySpec(BaseModel):
    """One library to mine SWE tasks from: a pinned release, its sources and what to leave out."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    split: str = "train"
    sha256: str | None = Field(None, description="pinned digest; looked up in the index when absent")
    requirements: list[str] = Field(default_factory=lambda: list(DEFAULT_REQUIREMENTS))
    python_path: list[str] = Field(default_factory=lambda: ["."])
    test_cmd: str = DEFAULT_TEST_CMD
    pytest_plugins: list[str] = Field(
        default_factory=list, description="plugin modules grading loads with -p (detected ones are added)"
    )
    sources: list[str] = Field(["**/*.py"], description="globs (from the repository root) of files to mutate")
    exclude: list[str] = Field(default_factory=list, description="globs of source files never mutated")
    test_paths: list[str] = Field(default_factory=list, description="what pytest runs for the whole suite")
    ungraded_tests: list[str] = Field(
        default_factory=list,
        description="test ids never graded on: timing-dependent tests seen failing elsewhere under load",
    )


class BuildConfig(BaseModel):
    """The SWE builder's TOML config: limits, seed and the libraries; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    per_library: int = Field(10, gt=0)
    max_candidates: int = Field(150, gt=0)
    max_failing: int = Field(5, gt=0)
    seed: int = 0
    stability_runs: int = Field(3, ge=1)
    load_runs: int = Field(
        2, ge=0, description="stability runs beside CPU-burning processes (timing-dependent tests fail)"
    )
    load_factor: int = Field(2, ge=1, description="busy loops per CPU the sandbox sees, in a load run")
    validation_runs: int = Field(2, ge=1)
    test_timeout: float = Field(120.0, gt=0)
    library: list[LibrarySpec]

    @classmethod
    def load(cls, path: Path) -> BuildConfig:
        """Read and validate a config file; every problem becomes a ConfigError naming the key."""
        try:
            return cls.model_validate(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read build config {path}: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"build config {path} is invalid: {problems}") from None


def pinned_source(lib: LibrarySpec) -> PyPISource:
    """The library's sdist pin: the configured digest, or the one the index publishes for the file."""
    digest = lib.sha256 or find_sdist(lib.name, lib.version)[1]
    if not digest:
        raise ConfigError(f"the index gives no sha256 for {lib.name} {lib.version}; set sha256 in the config")
    return PyPISource(name=lib.name, version=lib.version, sha256=digest)


def base_commit_of(instance: SWEInstance, cache: Path) -> str:
    """The commit id the instance's base tree hashes to (sdist, or sdist with the gold patch reversed)."""
    unknown = instance.model_copy(update={"base_commit": ""})
    with tempfile.TemporaryDirectory() as tmp:
        return materialize(unknown, Path(tmp) / "repo", cache, verify=False)


# `sh LOAD_SCRIPT N command...`: N busy loops beside the command, stopped when it ends. A loop also stops
# once the script's shell is gone (a run killed at its timeout), so none outlives its run. The loops hold
# none of the command's descriptors (fd 3 carries the report), so they never keep its pipes open.
LOAD_SCRIPT = "/tmp/orchard-load.sh"
LOAD_SH = """\
n=$1; shift
shell=$$; pids=; i=0
while [ "$i" -lt "$n" ]; do
  (while kill -0 "$shell" 2>/dev/null; do :; done) </dev/null >/dev/null 2>&1 3>&- &
  pids="$pids $!"; i=$((i + 1))
done
"$@"; rc=$?
kill $pids 2>/dev/null
exit $rc
"""


class Stability(BaseModel):
    """What the clean runs of a library's suite found."""

    tests: list[str] = Field(description="tests that passed in every run, alone and under load")
    slowest: float = Field(description="seconds of the slowest run alone")
    load_sensitive: list[str] = Field(
        default_factory=list, description="tests that passed in every run alone but not under load"
    )


def under_load(sandbox: Sandbox, instance: SWEInstance, factor: int) -> SWEInstance:
    """The instance with its test command run beside `factor` busy loops per CPU of the sandbox."""
    sandbox.write_file(LOAD_SCRIPT, LOAD_SH)
    count = sandbox.exec("nproc", session=False).stdout.strip()
    loops = factor * (int(count) if count.isdigit() else 1)
    return instance.model_copy(update={"test_cmd": f"sh {LOAD_SCRIPT} {loops} {instance.test_cmd}"})


def _passing(
    sandbox: Sandbox, instance: SWEInstance, paths: list[str], timeout: float
) -> tuple[set[str], float]:
    """The tests (in test files) one run passes, and its seconds; a suite that does not run is an error."""
    run = run_tests(sandbox, instance, paths, timeout)
    if run.error or run.timed_out:
        raise ConfigError(
            f"the test suite of {instance.repo} does not run: {run.error or 'timeout'}; "
            f"the end of pytest's output:\n{run.log_tail[-ERROR_TAIL:].strip()}"
        )
    ok = {t for t, s in run.statuses.items() if s == TestStatus.PASSED and is_protected(t.split("::")[0])}
    return ok, run.duration


def stable_tests(
    sandbox: Sandbox,
    instance: SWEInstance,
    paths: list[str],
    runs: int,
    timeout: float,
    load_runs: int = 0,
    load_factor: int = 2,
) -> Stability:
    """Tests in test files that pass in every one of `runs` runs alone and of `load_runs` runs beside busy
    loops (flaky, timing-dependent and failing ones dropped).

    A test with a deadline (a socket timeout, a sleep-based race) passes on an idle machine and fails when
    the grader runs many sandboxes at once; the load runs find it before an instance grades on it. They
    get `load_factor + 1` times the timeout: the suite has about that share of the CPU.
    """
    alone: set[str] | None = None
    slowest = 0.0
    for _ in range(runs):
        ok, seconds = _passing(sandbox, instance, paths, timeout)
        alone = ok if alone is None else alone & ok
        slowest = max(slowest, seconds)
    kept = set(alone or ())
    if load_runs:
        loaded = under_load(sandbox, instance, load_factor)
        for _ in range(load_runs):
            kept &= _passing(sandbox, loaded, paths, timeout * (load_factor + 1))[0]
    return Stability(tests=sorted(kept), slowest=slowest, load_sensitive=sorted(set(alone or ()) - kept))


def mutation_sites(tree: PreparedTree, lib: LibrarySpec) -> list[Mutation]:
    """The candidate mutations in the library's source files, skipping protected and excluded ones."""
    repo = tree.path / "repo"
    files = sorted({f for pattern in lib.sources for f in repo.glob(pattern) if f.is_file()})
    sites: list[Mutation] = []
    for file in files:
        rel = file.relative_to(repo).as_posix()
        if is_protected(rel) or rel == "setup.py" or any(file.match(g) for g in lib.exclude):
            continue
        sites += find_mutations(file.read_text(encoding="utf-8"), rel)
    return sites


def fix_patch(sandbox: Sandbox, path: str, mutant: str) -> str:
    """The gold patch (mutant -> original) with enough context that every hunk's old text is unique."""
    for context in (3, 5, 8, 13, 21):
        diff = f"git diff -R --src-prefix=b/ --dst-prefix=a/ -U{context} -- {path}"
        result = sandbox.exec(f"cd {REPO_DIR} && {diff}", session=False)
        hunks = re.split(r"(?m)^@@.*\n", result.stdout)[1:]
        olds = ["".join(line[1:] + "\n" for line in h.splitlines() if line[:1] in (" ", "-")) for h in hunks]
        if all(mutant.count(old) == 1 for old in olds):
            return result.stdout
    raise ValueError("no unique context")


def screen(
    sandbox: Sandbox,
    template: SWEInstance,
    mutation: Mutation,
    original: str,
    stable: list[str],
    config: BuildConfig,
) -> tuple[str, dict[str, str]] | None:
    """Run the stable tests on one mutant; return (gold patch, failing test -> message) if it qualifies."""
    mutant = mutation.apply(original)
    target = f"{REPO_DIR}/{mutation.path}"
    sandbox.write_file(target, mutant)
    try:
        run = run_tests(sandbox, template, stable, config.test_timeout)
        if run.error or run.timed_out:
            return None
        failing = {t: run.messages.get(t, "") for t in stable if run.statuses.get(t) not in PASSING}
        if not 1 <= len(failing) <= config.max_failing:
            return None
        try:
            return fix_patch(sandbox, mutation.path, mutant), failing
        except ValueError:
            return None
    finally:
        sandbox.write_file(target, original)


def validate(
    backend: Backend, instance: SWEInstance, tree: PreparedTree, runs: int, timeout: float
) -> str | None:
    """None if the gold patch resolves and doing nothing does not, every time; else why not."""
    for _ in range(runs):
        gold = grade(backend, tree, instance, instance.patch, timeout=timeout)
        if gold.status != "resolved":
            return f"gold patch: {gold.status} ({gold.reason})"
        noop = grade(backend, tree, instance, "", timeout=timeout)
        if noop.status != "unresolved":
            return f"empty patch: {noop.status} ({noop.reason})"
    return None


def pristine(lib: LibrarySpec, cache: Path) -> tuple[SWEInstance, PreparedTree]:
    """The library's unmutated sdist as an instance without a task, and its prepared tree, with the pytest
    plugins its test configuration needs (see plugins.py) pinned in its venv and loaded by grading."""
    source = pinned_source(lib)
    slug = f"{re.sub(r'[^a-z0-9]+', '-', lib.name.lower())}-{lib.version}"
    template = SWEInstance(
        instance_id=f"{slug}__pristine",
        repo=lib.name,
        base_commit="",
        patch="",
        problem_statement="",
        FAIL_TO_PASS=[],
        version=lib.version,
        split=lib.split,
        source=source,
        requirements=lib.requirements,
        python_path=lib.python_path,
        test_cmd=lib.test_cmd,
        pytest_plugins=lib.pytest_plugins,
    )
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        template.base_commit = materialize(template, repo, cache, verify=False)
        template = with_plugins(template, repo)
    return template, prepare(template, cache)


def library_stability(
    sandbox: Sandbox, template: SWEInstance, lib: LibrarySpec, config: BuildConfig
) -> Stability:
    """The stability runs the config asks for, on the library's whole suite, less its ungraded tests."""
    found = stable_tests(
        sandbox,
        template,
        lib.test_paths,
        config.stability_runs,
        config.test_timeout,
        config.load_runs,
        config.load_factor,
    )
    return found.model_copy(update={"tests": [t for t in found.tests if t not in lib.ungraded_tests]})


def build_library(
    lib: LibrarySpec, config: BuildConfig, backend: Backend, cache: Path, log: Log
) -> Iterator[SWEInstance]:
    """Yield validated instances of one library, at most `config.per_library`."""
    template, tree = pristine(lib, cache)
    slug = template.instance_id.removesuffix("__pristine")
    rng = random.Random(f"{config.seed}:{slug}")
    made, seen_failures, seen_functions = 0, set(), set()
    with backend.create(grading_spec(tree, ttl=BUILD_TTL)) as sandbox:
        stability = library_stability(sandbox, template, lib, config)
        stable = stability.tests
        # A mutant that loops forever should cost seconds, not the full per-run timeout.
        screening = config.model_copy(
            update={"test_timeout": min(config.test_timeout, max(10.0, 5 * stability.slowest))}
        )
        log(f"{slug}: {len(stable)} stable tests")
        if stability.load_sensitive:
            log(f"{slug}: dropped, failed under load: {', '.join(stability.load_sensitive)}")
        sites = mutation_sites(tree, lib)
        candidates = sample_mutations(sites, rng, config.max_candidates)
        log(f"{slug}: {len(sites)} mutation sites, screening {len(candidates)}")
        originals: dict[str, str] = {}
        for mutation in candidates:
            if made >= config.per_library:
                break
            if (mutation.path, mutation.function) in seen_functions:
                continue
            original = originals.setdefault(mutation.path, (tree.path / "repo" / mutation.path).read_text())
            found = screen(sandbox, template, mutation, original, stable, screening)
            if found is None or frozenset(found[1]) in seen_failures:
                continue
            patch, failing = found
            digest = hashlib.sha256(patch.encode()).hexdigest()[:8]
            instance = SWEInstance.model_validate(
                {
                    **template.model_dump(),
                    "instance_id": f"{slug}__{mutation.operator}__{digest}",
                    "patch": patch,
                    "problem_statement": template_statement(lib.name, failing),
                    "FAIL_TO_PASS": sorted(failing),
                    "PASS_TO_PASS": [t for t in stable if t not in failing],
                    "mutation": {
                        "operator": mutation.operator,
                        "description": mutation.description,
                        "path": mutation.path,
                        "function": mutation.function,
                    },
                }
            )
            instance.base_commit = base_commit_of(instance, cache)
            instance_tree = prepare(instance, cache)
            problem = validate(backend, instance, instance_tree, config.validation_runs, config.test_timeout)
            if problem:
                log(f"{instance.instance_id}: rejected, {problem}")
                shutil.rmtree(instance_tree.path, ignore_errors=True)
                continue
            seen_failures.add(frozenset(failing))
            seen_functions.add((mutation.path, mutation.function))
            made += 1
            log(f"{instance.instance_id}: accepted ({mutation.description}; {len(failing)} failing)")
            yield instance
    if made < config.per_library:
        log(f"{slug}: only {made} of {config.per_library} instances (raise max_candidates for more)")
