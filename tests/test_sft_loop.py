"""End to end, shortened for CPU: oracle episodes -> orchard-train sft -> orchard-bench run of the result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# An end-to-end run of three stages (about 2-4 minutes on 2 busy cores): the hang guard is the subprocess's
# own 900 s, not pytest-timeout's default 300 s, which a busy CI machine can reach.
@pytest.mark.timeout(960)
def test_the_loop_closes_on_the_embedded_model(tmp_path, hf_generator):  # hf_generator: the GGUF is converted
    flags = ["--train-limit", "2", "--test-limit", "1", "--max-steps", "1", "--batch-size", "1"]
    flags += ["--max-new-tokens", "16", "--jobs", "1"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sft_loop.py"), "--out", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "sft_loop.json").read_text())
    assert (
        results["train_episodes"] == 2
        and results["sft"]["steps"] == 1
        and results["sft"]["trained_tokens"] > 0
    )
    assert results["base"]["episodes"] == results["after"]["episodes"] == 1
    [row] = [json.loads(line) for line in (tmp_path / "sft-test" / "episodes.jsonl").read_text().splitlines()]
    assert row["model"] == str(tmp_path / "checkpoint") and row["status"] not in ("error", "infra_error")
    assert row["turns"] and row["turns"][0]["token_ids"]  # the checkpoint ran as a token-in-token-out policy
