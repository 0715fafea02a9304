"""What every trainer does before its loop: load the policy, check --out, decide whether to resume.

Shared by `sft` and `grpo`, so a mistake (a missing model, an occupied --out) reads the same in both.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from orchard_envs.errors import ConfigError
from orchard_envs.trainers.distributed import World


def loaded(name: str, load: Any, *args: Any, **kwargs: Any) -> Any:
    """A model, tokenizer or chat format that cannot be loaded is a user's mistake, said in one line."""
    try:
        return load(*args, **kwargs)
    except (OSError, ValueError) as exc:  # missing files, a folder without a model, no chat template
        raise ConfigError(f"cannot use model {name!r}: {exc}") from exc


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    """The training dtype: `auto` is bfloat16 on a GPU that has it, float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def check_out(out: Path, resume: bool, world: World) -> None:
    """Never overwrite a finished or running model by accident; an unwritable --out fails before any work."""
    from orchard_envs.cli_support import check_writable_folder

    if not world.is_main:  # rank 0 decides: by the time another rank looked, rank 0 may have written there
        return
    check_writable_folder(out, "--out")
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"{out} already holds files; pass --resume to continue that run, or a new --out")


def resumable(out: Path, resume: bool, world: World) -> bool:
    """Whether to load a saved state, saying which step a --resume continues from or why it cannot."""
    from orchard_envs.trainers.state import remove_unfinished_saves, saved_step

    if not resume:
        return False
    removed = remove_unfinished_saves(out) if world.is_main else []
    step = saved_step(out)
    if world.is_main:
        for folder in removed:
            notice(f"removed an unfinished state save: {folder}")
        if step is None:
            why = "it does not exist" if not out.exists() else "it holds no complete saved state"
            notice(f"--resume: nothing to resume in {out} ({why}); starting from step 0")
        else:
            notice(f"--resume: continuing from step {step} ({out / 'state'})")
    return step is not None


def lora_config(rank: int, alpha: int) -> Any:
    """LoRA adapters on every linear layer of a causal LM."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM")


def notice(message: str) -> None:
    """One line for the person at the terminal, on stderr (stdout holds the JSON report)."""
    print(f"orchard-train: {message}", file=sys.stderr, flush=True)
