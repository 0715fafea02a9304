"""The proxy in front of orchard-serve: the real tokenizer's ids are recorded, and they extend turn to turn
where the harness keeps its history (and are flagged where it rewrites it)."""

from __future__ import annotations

import httpx
import pytest
from helpers import FixedReplyGenerator, serving

from orchard_envs.model_server.app import create_app
from orchard_envs.proxy.episode import build_transcript
from orchard_envs.proxy.server import ProxyServer
from orchard_envs.proxy.upstream import URLUpstream


@pytest.fixture(scope="module")
def served(hf_generator):
    with serving(create_app(FixedReplyGenerator(hf_generator, "Let me look."), "smol")) as url:
        yield f"{url}/v1"


def test_token_ids_from_orchard_serve_extend_where_history_is_kept(served):
    system, user = {"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "Fix it."}
    with ProxyServer(URLUpstream(served), port=0) as proxy:
        key = proxy.recorder.open()
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{proxy.port}", headers={"Authorization": f"Bearer {key}"}
        )
        history = [system, user]
        for turn in range(3):
            if turn == 2:  # the harness summarises its history away
                history = [system, {"role": "user", "content": "Summary: nothing found yet."}]
            reply = http.post(
                "/v1/chat/completions", json={"model": "smol", "messages": history}, timeout=120
            )
            assert reply.status_code == 200, reply.text
            history = [
                *history,
                reply.json()["choices"][0]["message"],
                {"role": "user", "content": "ls: a.py"},
            ]
        calls = proxy.recorder.close(key)
    assert all(c.prompt_token_ids and c.token_ids and len(c.logprobs) == len(c.token_ids) for c in calls)
    turns = build_transcript(calls).turns
    assert [t.extends_previous for t in turns] == [None, True, False]
