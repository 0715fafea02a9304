"""The builder on libraries whose own test configuration needs pytest plugins (wcwidth's `--cov` in tox.ini,
humanize's filterwarnings naming a coverage class), its error when a suite does not run, its message for a
missing version, and plain-text problem statements."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from helpers import serving

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.swe.instance import SWEInstance
from orchard_envs.tasks.swe.plugins import needed_plugins, with_plugins
from orchard_envs.tasks.swe.source import SourceError, find_sdist
from orchard_envs.tasks.swe.statement import rewrite_statement, template_statement

LIB = "def double(x):\n    return 2 * x\n"
TESTS = "import warnings\n\nfrom lib import double\n\n\ndef test_double():\n    assert double(2) == 4\n"
# wcwidth 0.2.13's tox.ini: `--cov` in addopts (with a threshold, which must not fail a graded run).
COV_TOX = "[tox]\nenvlist = py\n\n[pytest]\naddopts = --cov=lib --cov-report=term --cov-fail-under=100\n"
# humanize's pyproject: an error filter and a coverage warning class pytest must import at startup.
WARN_PYPROJECT = """\
[tool.pytest.ini_options]
filterwarnings = ["error", "ignore::coverage.exceptions.CoverageWarning"]
"""


def test_missing_version_names_the_sdist_as_published():
    app = FastAPI()

    @app.get("/simple/wcwidth/")
    def page() -> HTMLResponse:
        link = '<a href="/files/wcwidth-0.2.13.tar.gz#sha256=' + "0" * 64 + '">wcwidth-0.2.13.tar.gz</a>'
        return HTMLResponse(f"<html><body>{link}</body></html>")

    with serving(app) as url:
        assert find_sdist("wcwidth", "0.2.13", f"{url}/simple")[1] == "0" * 64
        with pytest.raises(SourceError) as caught:
            find_sdist("wcwidth", "9.9.9", f"{url}/simple")
    assert "lists no sdist wcwidth-9.9.9.tar.gz" in str(caught.value)


def test_statements_carry_no_terminal_escapes():
    coloured = "\x1b[94mE       \x1b[0m\x1b[1massert\x1b[22m 1 == 2\x1b(B\x07"
    text = template_statement("lib", {"tests/test_a.py::test_x": coloured})
    assert "\x1b" not in text and "\x07" not in text
    assert "`tests/test_a.py::test_x` fails with: E assert 1 == 2" in text
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        return {"choices": [{"message": {"role": "assistant", "content": "\x1b[31mIt breaks.\x1b[0m"}}]}

    with serving(app) as url:
        assert rewrite_statement("template", "", f"{url}/v1", "m") == "It breaks."


@pytest.mark.parametrize(
    ("files", "dists"),
    [
        ({"tox.ini": COV_TOX}, ["pytest-cov"]),
        ({"pyproject.toml": WARN_PYPROJECT}, ["pytest-cov"]),
        (
            {"setup.cfg": "[tool:pytest]\naddopts = -n auto -p xdist --timeout=30\n"},
            ["pytest-timeout", "pytest-xdist"],
        ),
        ({"pytest.ini": "[pytest]\naddopts = -nauto\ntimeout = 5\n"}, ["pytest-timeout", "pytest-xdist"]),
        ({"pyproject.toml": '[tool.pytest.ini_options]\naddopts = ["--cov", "lib"]\n'}, ["pytest-cov"]),
        ({"tox.ini": "[pytest]\nrequired_plugins = pytest-timeout>=2\n"}, ["pytest-timeout"]),
        # pytest reads pytest.ini first: tox.ini's --cov is not its configuration then.
        ({"pytest.ini": "[pytest]\naddopts = -q\n", "tox.ini": COV_TOX}, []),
        ({"tox.ini": "[tox]\nenvlist = py\n", "setup.cfg": "[metadata]\nname = x\n"}, []),
        ({"tox.ini": "[pytest]\nfilterwarnings = ignore::DeprecationWarning\naddopts = -p no:xdist\n"}, []),
    ],
)
def test_plugins_are_found_in_the_config_pytest_reads(tmp_path, files, dists):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert [plugin.dist for plugin in needed_plugins(tmp_path).plugins] == dists


def _instance(**fields: object) -> SWEInstance:
    base = {"instance_id": "lib__pristine", "repo": "lib", "base_commit": "", "patch": ""}
    return SWEInstance(**{**base, "problem_statement": "", "FAIL_TO_PASS": [], **fields})


def test_detected_plugins_are_pinned_loaded_by_grading_and_required_plugins_switched_off(tmp_path):
    (tmp_path / "tox.ini").write_text(COV_TOX + "required_plugins = pytest-cov\n")
    found = with_plugins(_instance(), tmp_path)
    assert "pytest-cov==6.0.0" in found.requirements and "coverage==7.6.10" in found.requirements
    assert found.pytest_plugins == ["pytest_cov.plugin"]
    assert found.test_cmd.endswith(" --no-cov -o required_plugins=")
    # A plugin the library's config already pins is kept as given.
    own = with_plugins(_instance(requirements=["pytest==8.3.4", "pytest-cov==5.0.0"]), tmp_path)
    assert [r for r in own.requirements if "cov" in r] == ["pytest-cov==5.0.0"]
    (tmp_path / "tox.ini").write_text("[pytest]\nrequired_plugins = pytest-frobnicate\n")
    with pytest.raises(ConfigError, match=r"requires pytest-frobnicate .*pytest_plugins"):
        with_plugins(_instance(), tmp_path)


def _git_instance(tmp_path, config: dict[str, str]) -> SWEInstance:
    from swe_fixtures import init_repo

    repo = tmp_path / "lib"
    base = init_repo(repo, {"lib.py": LIB, "tests/test_lib.py": TESTS, **config})
    return _instance(base_commit=base, source={"type": "git", "path": str(repo)})


def test_a_suite_that_does_not_run_shows_pytests_output(tmp_path, local_backend):
    from orchard_envs.tasks.swe.build import stable_tests
    from orchard_envs.tasks.swe.grading import grading_spec
    from orchard_envs.tasks.swe.prepare import prepare

    instance = _git_instance(tmp_path, {"tox.ini": COV_TOX})
    tree = prepare(instance, tmp_path / "cache")
    with local_backend.create(grading_spec(tree)) as sandbox, pytest.raises(ConfigError) as caught:
        stable_tests(sandbox, instance, ["tests"], runs=1, timeout=120)
    assert "pytest exited 4" in str(caught.value)
    assert "unrecognized arguments: --cov=lib" in str(caught.value)


BOTH = WARN_PYPROJECT + 'addopts = "--cov=lib --cov-fail-under=100"\n'


@pytest.mark.parametrize(
    "config", [{"tox.ini": COV_TOX}, {"pyproject.toml": WARN_PYPROJECT}, {"pyproject.toml": BOTH}]
)
def test_suites_needing_coverage_run_and_grade_with_the_detected_plugin(tmp_path, local_backend, config):
    from orchard_envs.tasks.swe.build import stable_tests
    from orchard_envs.tasks.swe.grading import grade, grading_spec
    from orchard_envs.tasks.swe.prepare import prepare

    pristine = _git_instance(tmp_path, config)
    instance = with_plugins(pristine, tmp_path / "lib")
    tree = prepare(instance, tmp_path / "cache")
    with local_backend.create(grading_spec(tree)) as sandbox:
        found = stable_tests(sandbox, instance, ["tests"], runs=1, timeout=120)
    assert found.tests == ["tests/test_lib.py::test_double"]
    graded = instance.model_copy(update={"PASS_TO_PASS": found.tests})
    result = grade(local_backend, tree, graded, "")
    assert result.status == "resolved", result.reason
    assert not result.test_run.log_tail.count(".coverage")


def test_wcwidth_whose_tox_ini_adds_cov_builds_its_stable_tests(tmp_path, local_backend):
    """The library of the report: its sdist's tox.ini adds `--cov` to every pytest run."""
    from orchard_envs.tasks.swe.build import BuildConfig, LibrarySpec, library_stability, pristine
    from orchard_envs.tasks.swe.grading import grading_spec

    lib = LibrarySpec(name="wcwidth", version="0.2.13", sources=["wcwidth/*.py"], test_paths=["tests"])
    config = BuildConfig(library=[lib], stability_runs=1, load_runs=0)
    template, tree = pristine(lib, tmp_path / "cache")
    assert template.pytest_plugins == ["pytest_cov.plugin"] and "--no-cov" in template.test_cmd
    with local_backend.create(grading_spec(tree)) as sandbox:
        assert len(library_stability(sandbox, template, lib, config).tests) > 10
