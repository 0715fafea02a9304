"""Saving what a run needs to go on (resumable state) and what users load (a Hugging Face checkpoint).

Resumable state is `torch.distributed.checkpoint` (each rank writes its shard; it works alone too) plus a
small JSON file with the step and the scheduler; it is written to a temporary folder and renamed, so a
crash mid-save leaves the previous state intact. The data order is a function of the seed and the step,
so the step is all a resumed run needs to see the same batches.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from orchard_envs.trainers.distributed import World, barrier

STATE = "state"


def save_state(out: Path, module: Any, optimizer: Any, scheduler: Any, step: int, world: World) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    staging, final = out / f".{STATE}-tmp", out / STATE
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)
    barrier(world)
    model_state, optim_state = get_state_dict(module, optimizer)
    with _alone(world):
        dcp.save(
            {"model": model_state, "optim": optim_state}, checkpoint_id=str(staging), no_dist=world.size == 1
        )
    if world.is_main:
        meta = {"step": step, "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state().tolist()}
        (staging / "progress.json").write_text(json.dumps(meta))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    barrier(world)


@contextlib.contextmanager
def _alone(world: World) -> Iterator[None]:
    """torch warns on every single-process checkpoint, even when told that is the intent."""
    with warnings.catch_warnings():
        if world.size == 1:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def saved_step(out: Path) -> int | None:
    progress = out / STATE / "progress.json"
    return json.loads(progress.read_text())["step"] if progress.exists() else None


def load_state(out: Path, module: Any, optimizer: Any, scheduler: Any, world: World) -> int:
    """Restores model, optimizer, scheduler and RNG; returns the step to continue from."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(module, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with _alone(world):
        dcp.load(state, checkpoint_id=str(out / STATE), no_dist=world.size == 1)
    set_state_dict(module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    meta = json.loads((out / STATE / "progress.json").read_text())
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(torch.tensor(meta["rng"], dtype=torch.uint8))
    return int(meta["step"])


def export_checkpoint(out: Path, module: Any, hf_model: Any, tokenizer: Any, lora: Any, world: World) -> None:
    """A plain Hugging Face checkpoint in `out` (LoRA merged in), which transformers, orchard-serve and vLLM
    load as is. Built from the full state dict on a fresh CPU model, so it works the same under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoModelForCausalLM

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(module, options=options)  # a collective: every rank takes part
    if world.is_main:
        weights = {key.removeprefix("model."): value for key, value in full.items()}
        dtype = next(iter(weights.values())).dtype
        base = hf_model.get_base_model() if lora is not None else hf_model
        fresh = AutoModelForCausalLM.from_config(base.config, dtype=dtype)
        if lora is not None:
            from peft import get_peft_model

            fresh = get_peft_model(fresh, lora)
        fresh.load_state_dict(weights)
        if lora is not None:
            fresh = fresh.merge_and_unload()
        fresh.generation_config = base.generation_config
        fresh.config.use_cache = True
        fresh.save_pretrained(out)
        tokenizer.save_pretrained(out)  # includes the chat template
    barrier(world)
