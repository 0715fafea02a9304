"""End to end, shortened for CPU: sft_loop's checkpoint -> orchard-train grpo -> orchard-bench of all 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# Four stages of real command lines (about 4-8 minutes on 2 busy cores): the hang guard is the subprocess's
# own limit, not pytest-timeout's default 300 s.
@pytest.mark.timeout(1560)
def test_the_rl_loop_closes_on_the_embedded_model(tmp_path, hf_generator):  # hf_generator: GGUF converted
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rl_loop.py"), "--out", str(tmp_path), "--smoke"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "rl_loop.json").read_text())
    assert results["grpo"]["rollouts"] >= 2 and len(results["grpo"]["reward_curve"]) == 1
    for name in ("base", "sft", "rl"):
        assert results[name]["tasks"] == 1
        low, high = results[name]["pass_at_1_ci"]
        assert low <= results[name]["pass_at_1"] <= high
    [row] = [json.loads(line) for line in (tmp_path / "rl-test" / "episodes.jsonl").read_text().splitlines()]
    assert row["model"] == str(tmp_path / "grpo") and row["status"] not in ("error", "infra_error")
    assert row["turns"] and row["turns"][0]["token_ids"]  # the GRPO checkpoint ran as a token-level policy
