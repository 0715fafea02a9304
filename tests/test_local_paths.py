"""The local backend's host-side path resolution never leaves the sandbox's writable areas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchard_envs.errors import PathEscapeError
from orchard_envs.sandbox.local.paths import Area, resolve


def to_host(path: str, areas: list[Area], follow_last: bool = True) -> Path:
    return resolve(path, areas, follow_last).host


@pytest.fixture
def areas(tmp_path: Path) -> list[Area]:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    (work / "sub").mkdir(parents=True)
    tmp.mkdir()
    os.symlink("/etc", work / "etc-link")
    os.symlink("../..", work / "sub" / "up2")
    os.symlink("/tmp/target", work / "to-tmp")
    os.symlink("loop-b", work / "loop-a")
    os.symlink("loop-a", work / "loop-b")
    return [Area("/workspace", work), Area("/tmp", tmp)]


def test_plain_and_linked_paths(areas):
    work, tmp = areas[0].host, areas[1].host
    assert to_host("/workspace/sub/x", areas) == work / "sub" / "x"
    assert to_host("/workspace/to-tmp", areas) == tmp / "target"
    assert to_host("/workspace/etc-link", areas, follow_last=False) == work / "etc-link"


@pytest.mark.parametrize("path", ["/etc/passwd", "/workspace/etc-link/passwd", "/workspace/sub/up2/etc",
                                  "/workspace/../root", "/"])
def test_escapes_are_refused(areas, path):
    with pytest.raises(PathEscapeError):
        to_host(path, areas)


def test_symlink_loops_are_refused(areas):
    with pytest.raises(PathEscapeError, match="too many levels"):
        to_host("/workspace/loop-a", areas)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(st.lists(st.sampled_from(["..", ".", "sub", "etc-link", "up2", "to-tmp", "x", "workspace", "tmp"]),
                max_size=8))
def test_any_resolved_path_is_inside_an_area(areas, parts):
    path = "/" + "/".join(parts)
    try:
        host = to_host(path, areas)
    except PathEscapeError:
        return
    roots = [os.path.realpath(a.host) for a in areas]
    real = os.path.realpath(host)
    assert any(real == r or real.startswith(r + os.sep) for r in roots), (path, host)
