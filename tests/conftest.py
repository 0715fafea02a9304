"""Shared fixtures: real backends only. In CI (CI=true) a missing runtime fails instead of skipping."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from orchard_envs.sandbox import Sandbox, SandboxSpec, get_backend

BACKEND_NAMES = ["local", "docker", "remote"]

# Under `pytest -n N` each worker gets its share of the cores before torch starts its thread pool:
# N full-width pools on a small machine thrash it (a forward pass runs several times slower).
CPU_SHARE = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["OMP_NUM_THREADS"] = str(CPU_SHARE)


def require(condition: bool, reason: str) -> None:
    """Skip on a developer machine without the runtime; fail in CI, where it must exist."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see scripts/setup.sh)")
    pytest.skip(reason)


def docker_ready() -> bool:
    """A reachable Docker Engine holding the base image of the version this code needs."""
    try:
        from orchard_envs.sandbox.docker_image import BASE_VERSION, docker_client, image_version

        return image_version(docker_client()) == BASE_VERSION
    except Exception:
        return False


@pytest.fixture(scope="session")
def local_backend():
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    return get_backend("local")


@pytest.fixture(scope="session")
def docker_backend():
    require(
        docker_ready(),
        "Docker Engine with the current orchard-base:bookworm image is not available "
        "(python -m orchard_envs.sandbox.docker_image builds it)",
    )
    return get_backend("docker")


@pytest.fixture(scope="session")
def remote_backend(local_backend):
    """The remote backend against a real env service (uvicorn on loopback) serving `local`."""
    from helpers import serving

    from orchard_envs.env_service.app import create_app

    with serving(create_app(local_backend, "contract-key")) as url:
        yield get_backend("remote", url=url, api_key="contract-key")


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def make_sandbox(backend) -> Iterator[Callable[..., Sandbox]]:
    """Create sandboxes from spec keywords; all are closed at the end of the test."""
    made: list[Sandbox] = []

    def make(**spec: object) -> Sandbox:
        sandbox = backend.create(SandboxSpec(**spec))
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    return make_sandbox()


@pytest.fixture(scope="session")
def hf_generator():
    """The embedded default model (SmolLM2-135M-Instruct), loaded once per worker, float32 on CPU so
    greedy ids are exactly reproducible."""
    import torch

    from orchard_envs.agents.hf_backend import HFGenerator
    from orchard_envs.errors import ConfigError

    torch.set_num_threads(CPU_SHARE)  # in case torch was imported before this file set OMP_NUM_THREADS
    try:
        return HFGenerator(device="cpu")
    except ConfigError as exc:  # the package holding the GGUF is missing
        require(False, str(exc))
        raise


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A randomly initialised two-layer Llama on the real SmolLM2 tokenizer and chat template, saved as a
    checkpoint folder: the trainer tests need a real model and tokenizer, not a good one."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from orchard_envs.agents.hf_models import DEFAULT_MODEL, resolve_model

    torch.set_num_threads(CPU_SHARE)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
