"""Saving what a run needs to go on (resumable state) and what users load (a Hugging Face checkpoint).

Resumable state is `torch.distributed.checkpoint` (each rank writes its shard; it works alone too) plus a
small JSON file with the step and the scheduler, in `state/step-N/`; it is written to a temporary folder
and renamed, so a crash mid-save leaves the previous state intact, and only the newest `--save-total-limit`
states are kept. Optimizer state lives only there: the exported checkpoint is the weights alone, as
safetensors in the training dtype. The data order is a function of the seed and the step, so the step is
all a resumed run needs to see the same batches.
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
STEP_PREFIX = "step-"
TMP_SUFFIX = ".tmp"


class SaveAbandoned(KeyboardInterrupt):
    """Ctrl-C (a second one) during a state save: the unfinished save was removed, the last one stands."""


def state_dirs(out: Path) -> list[tuple[int, Path]]:
    """Complete saved states in `out`, oldest first: `state/step-N/` folders holding progress.json (and
    `state/` itself, the layout of earlier versions)."""
    root = out / STATE
    found = []
    if (root / "progress.json").exists():
        found.append((int(json.loads((root / "progress.json").read_text())["step"]), root))
    if root.is_dir():
        for folder in root.glob(f"{STEP_PREFIX}*"):
            if folder.suffix != TMP_SUFFIX and (folder / "progress.json").exists():
                found.append((int(json.loads((folder / "progress.json").read_text())["step"]), folder))
    return sorted(found)


def unfinished_saves(out: Path) -> list[Path]:
    """Staging folders of saves that never finished (a crash or SIGKILL mid-save), and the older layout's."""
    root = out / STATE
    staged = sorted(root.glob(f"{STEP_PREFIX}*{TMP_SUFFIX}")) if root.is_dir() else []
    return [*staged, *([out / f".{STATE}-tmp"] if (out / f".{STATE}-tmp").exists() else [])]


def remove_unfinished_saves(out: Path) -> list[Path]:
    """Delete saves that a crash left half-written; returns what was removed."""
    removed = unfinished_saves(out)
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def save_state(
    out: Path,
    module: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    world: World,
    keep: int = 1,
    extra: dict[str, Any] | None = None,
) -> None:
    """State for step `step` in `state/step-N/` (staged, then renamed); then only the newest `keep` stay.

    A KeyboardInterrupt while writing removes the staging folder and is raised as SaveAbandoned, so the
    previous state is intact and nothing half-written is left behind. `extra` (JSON-ready) is kept beside
    the step, for what else a run must resume (GRPO's pass-rate estimates); `saved_extra` reads it back."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    final = out / STATE / f"{STEP_PREFIX}{step:08d}"
    staging = final.with_suffix(TMP_SUFFIX)
    try:
        if world.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.parent.mkdir(parents=True, exist_ok=True)
        barrier(world)
        model_state, optim_state = get_state_dict(module, optimizer)
        with _alone(world):
            dcp.save(
                {"model": model_state, "optim": optim_state},
                checkpoint_id=str(staging),
                no_dist=world.size == 1,
            )
        if world.is_main:
            meta = {"step": step, "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state().tolist()}
            meta["extra"] = extra or {}
            (staging / "progress.json").write_text(json.dumps(meta))
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
    except KeyboardInterrupt:
        shutil.rmtree(staging, ignore_errors=True)
        raise SaveAbandoned from None
    if world.is_main:
        prune_states(out, keep)
    barrier(world)


def prune_states(out: Path, keep: int) -> None:
    """Remove all but the newest `keep` saved states (all of them, and `state/`, when keep is 0)."""
    found = state_dirs(out)
    for _, folder in found[: max(len(found) - keep, 0)]:
        if folder == out / STATE:  # the older layout's files sit in state/ itself
            for entry in folder.iterdir():
                if not entry.name.startswith(STEP_PREFIX):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if keep == 0 and (out / STATE).is_dir() and not any((out / STATE).iterdir()):
        (out / STATE).rmdir()


@contextlib.contextmanager
def _alone(world: World) -> Iterator[None]:
    """torch warns on every single-process checkpoint, even when told that is the intent."""
    with warnings.catch_warnings():
        if world.size == 1:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def saved_step(out: Path) -> int | None:
    """The step of the latest complete save in `out`, or None."""
    found = state_dirs(out)
    return found[-1][0] if found else None


def saved_extra(out: Path) -> dict[str, Any]:
    """The `extra` of the newest complete save (empty when none, or saved without one)."""
    found = state_dirs(out)
    if not found:
        return {}
    return dict(json.loads((found[-1][1] / "progress.json").read_text()).get("extra") or {})


def load_state(out: Path, module: Any, optimizer: Any, scheduler: Any, world: World) -> int:
    """Restores model, optimizer, scheduler and RNG from the newest state; returns its step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    _, folder = state_dirs(out)[-1]
    model_state, optim_state = get_state_dict(module, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with _alone(world):
        dcp.load(state, checkpoint_id=str(folder), no_dist=world.size == 1)
    set_state_dict(module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    meta = json.loads((folder / "progress.json").read_text())
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
        fresh.save_pretrained(out, safe_serialization=True)  # weights only, in the dtype they trained in
        for shard_file in out.glob("*.safetensors"):
            shard_file.chmod(0o644)  # ordinary files to share, not the private 0o600 they are written with
        tokenizer.save_pretrained(out)  # includes the chat template
    barrier(world)
