"""The instance builder end to end on a real library from PyPI, the statement rewriter over real HTTP,
and the `orchard-tasks` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from helpers import serving

from orchard_envs.tasks.swe.build import BuildConfig, build_library, stable_tests
from orchard_envs.tasks.swe.instance import load_suite
from orchard_envs.tasks.swe.statement import leaks_fix, rewrite_statement, template_statement

CLI = [sys.executable, "-c", "from orchard_envs.tasks.cli import main; main()"]
CONFIG = """
per_library = 2
max_candidates = 40
max_failing = 5
seed = 3
stability_runs = 2
validation_runs = 1

[[library]]
name = "inflection"
version = "0.5.1"
split = "test"
sources = ["inflection/*.py"]
test_paths = ["test_inflection.py"]
"""


def test_build_makes_validated_instances_from_a_real_sdist(tmp_path, local_backend, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "build.toml"
    config.write_text(CONFIG)
    settings = BuildConfig.load(config)
    instances = list(build_library(settings.library[0], settings, local_backend, tmp_path / "cache", print))
    assert len(instances) == 2
    for instance in instances:
        assert instance.source.sha256 and instance.split == "test" and 1 <= len(instance.FAIL_TO_PASS) <= 5
        assert instance.patch.startswith("diff --git a/inflection/") and instance.PASS_TO_PASS
        assert not leaks_fix(instance.problem_statement, instance.patch)
    out = tmp_path / "suite.jsonl"
    out.write_text("".join(i.model_dump_json() + "\n" for i in instances))
    assert [i.instance_id for i in load_suite(out)] == [i.instance_id for i in instances]


# A test with a deadline, as boltons' socket tests have: it needs most of a CPU for a moment. Alone it
# passes; beside the builder's busy loops (2 per CPU the sandbox sees) it gets under half of one.
DEADLINE_TEST = """\
import time


def test_steady():
    assert sum(range(10)) == 45


def test_deadline():
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < 0.5:
        pass
    assert (time.process_time() - cpu) / (time.perf_counter() - wall) > 0.6
"""


def test_stability_runs_under_load_drop_a_timing_dependent_test(tmp_path, local_backend):
    from swe_fixtures import init_repo

    from orchard_envs.tasks.swe.grading import grading_spec
    from orchard_envs.tasks.swe.instance import SWEInstance
    from orchard_envs.tasks.swe.prepare import prepare

    repo = tmp_path / "timed"
    base = init_repo(repo, {"timed.py": "", "tests/test_timed.py": DEADLINE_TEST})
    instance = SWEInstance(
        instance_id="timed__pristine",
        repo="timed",
        base_commit=base,
        patch="",
        problem_statement="",
        FAIL_TO_PASS=[],
        source={"type": "git", "path": str(repo)},
    )
    tree = prepare(instance, tmp_path / "cache")
    with local_backend.create(grading_spec(tree)) as sandbox:
        found = stable_tests(sandbox, instance, ["tests"], runs=1, timeout=120, load_runs=1)
    # Only what the load runs keep is asserted: alone on a busy CI machine the deadline test may fail too
    # (then it is dropped as flaky instead); under the load it always fails, so it is never kept.
    assert found.tests == ["tests/test_timed.py::test_steady"]
    assert set(found.load_sensitive) <= {"tests/test_timed.py::test_deadline"}


def test_template_statement_names_tests_not_the_fix():
    text = template_statement(
        "lib", {"tests/test_a.py::test_x": "AssertionError: assert 1 == 2\n" + "x" * 500}
    )
    assert "`tests/test_a.py::test_x` fails with: AssertionError: assert 1 == 2" in text
    assert len(text) < 700


def test_rewrite_uses_the_endpoint_and_refuses_a_leaking_reply():
    patch = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-    return a - b\n+    return a + b\n"
    replies = iter(["Subtracting instead of adding, users report.", "Just change it to return a + b please."])
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        assert body["model"] == "m" and body["messages"][-1]["content"] == "template"
        return {"choices": [{"message": {"role": "assistant", "content": next(replies)}}]}

    with serving(app) as url:
        assert (
            rewrite_statement("template", patch, f"{url}/v1", "m")
            == "Subtracting instead of adding, users report."
        )
        assert rewrite_statement("template", patch, f"{url}/v1", "m") == "template"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


def test_cli_lists_the_bundled_suite_and_errors_in_one_line(tmp_path):
    listed = run_cli("swe", "list", "--split", "test")
    assert listed.returncode == 0 and listed.stdout.count("\ttest\t") >= 16
    missing = run_cli("swe", "list", "--suite", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and missing.stderr.startswith("orchard-tasks: error: no SWE suite")
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instance_id": "x", "repo": "r"}) + "\n")
    invalid = run_cli("swe", "list", "--suite", str(bad))
    assert (
        invalid.returncode == 2
        and "instance x is invalid" in invalid.stderr
        and "Traceback" not in invalid.stderr
    )


def test_cli_check_runs_the_oracle_and_writes_swebench_predictions(tmp_path):
    suite = load_suite("swe-mini")
    one = tmp_path / "one.jsonl"
    one.write_text(next(i for i in suite if i.repo == "parse").model_dump_json() + "\n")
    preds = tmp_path / "preds.json"
    result = run_cli("swe", "check", "--suite", str(one), "--preds", str(preds))
    assert result.returncode == 0, result.stderr
    assert "oracle: 1/1 resolved, 0 infrastructure errors" in result.stdout
    (row,) = json.loads(preds.read_text())
    assert row["model_name_or_path"] == "oracle" and row["model_patch"].startswith("diff --git")


def test_cli_build_rejects_a_bad_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("per_library = 0\n")
    result = run_cli("swe", "build", "--config", str(config), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and "build config" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text", ["[[library]]\nname = 1", "not toml ="])
def test_build_config_errors_are_config_errors(tmp_path, text):
    from orchard_envs.errors import ConfigError

    path = Path(tmp_path / "c.toml")
    path.write_text(text)
    with pytest.raises(ConfigError):
        BuildConfig.load(path)


def test_install_cmd_runs_once_in_a_sandbox_with_network_and_its_result_is_kept(tmp_path, local_backend):
    from swe_fixtures import CalcRepo

    from orchard_envs.tasks.swe.grading import grade
    from orchard_envs.tasks.swe.prepare import prepare, sandbox_spec

    calc = CalcRepo(tmp_path / "calc")
    # A real pip install from the index into the task venv, plus a marker outside the repository.
    install = "pip install -q --disable-pip-version-check 'six==1.16.0' && echo built > ../installed.txt"
    instance = calc.instance(install_cmd=install)
    tree = prepare(instance, tmp_path / "cache")
    assert (tree.path / "installed.txt").read_text() == "built\n"
    assert list((tree.path / ".venv").glob("lib/python3*/site-packages/six.py"))
    assert prepare(instance, tmp_path / "cache") == tree  # built once
    with local_backend.create(sandbox_spec(tree)) as sb:
        assert sb.exec("python -c 'import six, calc; print(six.__version__)'").stdout.strip() == "1.16.0"
    assert grade(local_backend, tree, instance, instance.patch).status == "resolved"


def test_failing_install_cmd_is_a_clear_error(tmp_path):
    from swe_fixtures import CalcRepo

    from orchard_envs.tasks.swe.prepare import prepare
    from orchard_envs.tasks.swe.source import SourceError

    instance = CalcRepo(tmp_path / "calc").instance(install_cmd="echo nope >&2; exit 7")
    with pytest.raises(SourceError, match="install_cmd of calc__calc-1 exited 7: nope"):
        prepare(instance, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "trees").glob("calc*/"))  # nothing half-built is left
