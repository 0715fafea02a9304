"""Prepared trees seed every episode of a task and the grader: nothing an episode writes may reach them.

An escape from a sandbox (the host writing where the agent points it) once rewrote a hard-linked `.pth` of
a task venv and dropped a `conftest.py` into a shared tree, and every later episode graded 1.0. Each tree
now holds copies of its own, and the grader checks the sandbox's copy against the tree's manifest before
grading: here the poisoning is done on the host, as such an escape would, and must be caught.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from swe_fixtures import OUTCOME_REWRITER, CalcRepo, shared_cache

from orchard_envs.errors import SandboxError
from orchard_envs.sandbox import Backend
from orchard_envs.tasks.swe.grading import grade, run_tests
from orchard_envs.tasks.swe.instance import SWEInstance
from orchard_envs.tasks.swe.prepare import (
    REPO_DIR,
    WORKDIR,
    PreparedTree,
    TreeChanged,
    _manifest_path,
    build_venv,
    check_tree,
    prepare,
    sandbox_spec,
    walk_tree,
)
from orchard_envs.tasks.swe.report import verdict


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Iterator[Path]:
    path = shared_cache(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCHARD_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def calc(tmp_path_factory) -> CalcRepo:
    return CalcRepo(tmp_path_factory.mktemp("calc-src") / "calc")


@pytest.fixture(params=["local", "docker"])
def grading_backend(request) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")


def own_instance(calc: CalcRepo) -> SWEInstance:
    """An instance with a tree of its own (the id names the tree), so poisoning it spares other tests."""
    return calc.instance(instance_id=f"calc__shared-{secrets.token_hex(4)}")


def site_packages(root: Path) -> Path:
    return next(root.glob(".venv/lib/python3*/site-packages"))


def resolved_without_checks(backend: Backend, tree: PreparedTree, instance: SWEInstance) -> bool:
    """The empty patch's verdict in a sandbox of `tree` with no manifest check: what a poisoning achieves."""
    with backend.create(sandbox_spec(tree)) as sandbox:
        sandbox.apply_patch(instance.test_patch, cwd=REPO_DIR)
        tests = [*instance.FAIL_TO_PASS, *instance.PASS_TO_PASS]
        run = run_tests(sandbox, instance, tests, 300)  # generous: a loaded machine, not what is tested
    return verdict(run.statuses, instance.FAIL_TO_PASS, instance.PASS_TO_PASS).resolved


def test_no_file_of_a_prepared_tree_shares_its_inode_with_another_tree(calc, cache):
    """Hard links (`cp -al`) made one write reach the venv every tree is copied from and every tree."""
    trees = [prepare(own_instance(calc), cache).path for _ in range(2)]
    venv = build_venv(own_instance(calc), cache)
    seen: dict[Path, Counter] = {}
    for root in [*trees, venv]:
        seen[root] = Counter(
            (info.st_dev, info.st_ino)
            for path in root.rglob("*")
            if path.is_file() and not path.is_symlink()
            for info in [path.lstat()]
        )
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                info = path.lstat()
                assert info.st_nlink == seen[root][(info.st_dev, info.st_ino)], path  # no link outside
    assert not set(seen[trees[0]]) & set(seen[trees[1]]) and not set(seen[trees[0]]) & set(seen[venv])


POISONS = {
    # a plugin dropped where pytest finds it as the repository's own root conftest
    "conftest-in-the-tree": lambda root: (root / "repo" / "conftest.py").write_text(OUTCOME_REWRITER),
    # the venv's .pth written in place (through every hard link it has) to load a plugin at start-up
    "pth-written-in-place": lambda root: (
        (site_packages(root) / "orchard_poison.py").write_text(OUTCOME_REWRITER),
        (site_packages(root) / "orchard_repo.pth")
        .open("a")
        .write('import os; os.environ["PYTEST_PLUGINS"] = "orchard_poison"\n'),
    ),
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poisoned_tree_is_refused_and_prepared_again(poison, grading_backend, calc, cache):
    instance = own_instance(calc)
    tree = prepare(instance, cache)
    POISONS[poison](tree.path)
    assert resolved_without_checks(grading_backend, tree, instance)  # the poisoning works...
    with pytest.raises(TreeChanged, match=r"changed since it was prepared \(.*(conftest\.py|\.pth)"):
        grade(grading_backend, tree, instance, "", timeout=60)  # ...but the grader refuses the tree
    assert not tree.path.exists() and not _manifest_path(tree.path).exists()
    fresh = prepare(instance, cache)  # the next episode's: built anew, from an untouched venv
    assert not resolved_without_checks(grading_backend, fresh, instance)
    result = grade(grading_backend, fresh, instance, "", timeout=60)
    assert result.status == "unresolved" and result.reward == 0.0, result.reason
    other = prepare(own_instance(calc), cache)  # a tree of another task, from the same venv
    assert not resolved_without_checks(grading_backend, other, instance)


def test_a_bad_copy_of_an_intact_tree_is_refused_and_the_tree_kept(grading_backend, calc, cache):
    """A sandbox whose copy of the tree lost a file (an upload cut short) must not be graded; but the tree
    on the host is intact, and other episodes are being seeded from it: it is not removed."""
    instance = own_instance(calc)
    tree = prepare(instance, cache)
    with grading_backend.create(sandbox_spec(tree)) as sandbox:
        assert sandbox.exec(f"rm {REPO_DIR}/calc/__init__.py", timeout=60).exit_code == 0
        lost = r"copy of the prepared tree .* differs .*__init__\.py"
        with pytest.raises(SandboxError, match=lost) as error:
            check_tree(sandbox, tree)
    assert not isinstance(error.value, TreeChanged)
    assert tree.path.is_dir() and _manifest_path(tree.path).exists()
    assert prepare(instance, cache) == tree


def test_grading_moves_to_a_fresh_sandbox_when_its_copy_of_the_tree_went_wrong(grading_backend, calc, cache):
    """The env's grading sandbox (made at reset) lost a file of an intact tree: grading checks, drops it
    and grades in a fresh one, instead of failing the episode for an infrastructure fault."""
    instance = own_instance(calc)
    tree = prepare(instance, cache)
    broken = grading_backend.create(sandbox_spec(tree))
    assert broken.exec(f"rm {REPO_DIR}/calc/__init__.py", timeout=60).exit_code == 0
    result = grade(grading_backend, tree, instance, "", timeout=300, sandbox=broken)
    assert result.status == "unresolved" and result.reward == 0.0, result.reason
    assert "no such" not in (result.reason or "").lower()
    with pytest.raises(SandboxError):
        broken.exec("true", timeout=10)  # closed


def test_an_episode_writes_nothing_into_the_prepared_tree(grading_backend, calc, cache):
    """What an episode does in its own sandbox, links and all, stays there (backends copy or overlay)."""
    instance = own_instance(calc)
    tree = prepare(instance, cache)
    before = walk_tree(str(tree.path))
    with grading_backend.create(sandbox_spec(tree)) as sandbox:
        site = f"{WORKDIR}/.venv/lib/python3*/site-packages"
        script = (
            f"echo 'import os' >> {site}/orchard_repo.pth && cp {site}/orchard_repo.pth {REPO_DIR}/x.pth && "
            f"ln -f {REPO_DIR}/x.pth {REPO_DIR}/conftest.py && echo '# agent' >> {REPO_DIR}/calc/__init__.py"
        )
        assert sandbox.exec(script, timeout=60).exit_code == 0
    assert walk_tree(str(tree.path)) == before
    with grading_backend.create(sandbox_spec(tree)) as sandbox:
        check_tree(sandbox, tree)  # a fresh sandbox matches the manifest


def test_a_changed_venv_is_rebuilt_before_a_tree_is_copied_from_it(calc, cache):
    venv = build_venv(own_instance(calc), cache)
    pth = next(venv.glob("lib/python3*/site-packages/orchard_repo.pth"))
    with pth.open("a") as handle:  # in place, as a write through a hard link would
        handle.write('import os; os.environ["PYTEST_PLUGINS"] = "orchard_poison"\n')
    tree = prepare(own_instance(calc), cache)
    assert "orchard_poison" not in (site_packages(tree.path) / "orchard_repo.pth").read_text()
    assert "orchard_poison" not in pth.read_text()  # the venv itself was built anew
    assert os.path.exists(venv / "pyvenv.cfg")
