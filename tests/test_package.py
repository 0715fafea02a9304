"""Packaging promises: one import root, subpackages mapped from the top-level folders, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ["agents", "harnesses", "trainers", "leaderboard", "tasks"]


def test_importing_loads_no_heavy_dependency():
    code = (
        "import sys, orchard_envs, orchard_envs.sandbox, orchard_envs.env_service\n"
        "heavy = [m for m in ('docker', 'fastapi', 'uvicorn', 'httpx', 'torch') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_top_level_folders_import_under_orchard_envs():
    for name in SUBPACKAGES:
        module = __import__(f"orchard_envs.{name}", fromlist=["_"])
        assert Path(module.__file__).parent == ROOT / name


def test_wheel_installs_everything_under_one_root(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(ROOT)],
        check=True,
    )
    [wheel] = tmp_path.glob("orchard_envs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"orchard_envs"}
    for name in SUBPACKAGES:
        assert f"orchard_envs/{name}/__init__.py" in names
    assert "orchard_envs/sandbox/local/sandbox.py" in names
