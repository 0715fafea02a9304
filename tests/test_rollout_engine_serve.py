"""orchard-serve's weight-reload hook (for RL) on the toy checkpoint of rl_toy: a real uvicorn server."""

from __future__ import annotations

import httpx
import pytest
from helpers import serving
from rl_toy import build_tiny_model

from orchard_envs.agents.hf_backend import HFGenerator
from orchard_envs.model_server.app import create_app

pytest.importorskip("torch")


def test_reload_swaps_the_weights_behind_the_api_key(tmp_path):
    generator = HFGenerator(str(build_tiny_model(tmp_path / "a", seed=0)), device="cpu")
    other = build_tiny_model(tmp_path / "b", seed=1)
    with serving(create_app(generator, api_key="k")) as url:
        refused = httpx.post(f"{url}/v1/weights/reload", json={"path": str(other)}, timeout=60)
        assert refused.status_code == 401
        headers = {"Authorization": "Bearer k"}
        done = httpx.post(f"{url}/v1/weights/reload", json={"path": str(other)}, headers=headers, timeout=60)
        assert done.status_code == 200 and done.json()["weights_version"] == 1
        missing = httpx.post(f"{url}/v1/weights/reload", json={"path": str(tmp_path)}, headers=headers)
        assert missing.status_code == 400 and "model.safetensors" in missing.json()["error"]["message"]
    reference = HFGenerator(str(other), device="cpu").model.state_dict()
    assert all((reference[k] == v).all() for k, v in generator.model.state_dict().items())
