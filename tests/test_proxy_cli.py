"""`orchard-proxy`: mints keys, forwards to an upstream URL, and writes each key's calls as an episode."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
from helpers import serving
from proxy_helpers import scripted_app

from orchard_envs.episodes import read_episodes


def test_the_cli_records_each_key_as_one_episode(tmp_path):
    out = tmp_path / "episodes.jsonl"
    with serving(scripted_app()) as upstream:
        argv = [sys.executable, "-c", "from orchard_envs.proxy.cli import main; main()"]
        argv += ["--upstream", f"{upstream}/v1", "--out", str(out), "--port", "0", "--episodes", "2"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            started = json.loads(process.stdout.readline())
            first, second = started["keys"]["episode-0"], started["keys"]["episode-1"]
            messages = [{"role": "user", "content": "hi"}]
            for key, turns in ((first, 2), (second, 1)):
                for _ in range(turns):
                    answer = httpx.post(
                        started["base_url"] + "/chat/completions",
                        json={"model": "m", "messages": messages},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    assert answer.status_code == 200
                    messages = [
                        *messages,
                        answer.json()["choices"][0]["message"],
                        {"role": "user", "content": "go"},
                    ]
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
    episodes = {e.metadata.task_id: e for e in read_episodes(out)}
    assert episodes["episode-0"].metadata.model_calls == 2 and len(episodes["episode-0"].turns) == 2
    assert episodes["episode-0"].turns[1].extends_previous is True
    assert episodes["episode-1"].metadata.model_calls == 1
