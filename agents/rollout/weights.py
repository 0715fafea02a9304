"""Moving new weights into a loaded model: from a trainer's state dict or a saved HF checkpoint folder.

Used by every engine's `load_weights` after an optimizer step. Names must match the model's own state dict;
a name the model lacks is refused, and so is a missing one unless it is tied to a loaded one (the output
embedding of a model with tied word embeddings), so a half-applied update never passes silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchard_envs.errors import ConfigError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The tensors of a saved checkpoint folder (`model.safetensors`, sharded or not), on the CPU."""
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise ConfigError(f"no model.safetensors (or its index) in {folder}: pass a save_pretrained folder")
    state: dict[str, Any] = {}
    for shard in shards:
        state.update(load_file(str(folder / shard), device="cpu"))
    return state


def as_state_dict(state_dict_or_path: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A state dict as given, or read from a checkpoint folder."""
    if isinstance(state_dict_or_path, dict):
        return state_dict_or_path
    return read_checkpoint(state_dict_or_path)


def copy_into(model: Any, state_dict_or_path: dict[str, Any] | str | Path) -> None:
    """Copy the tensors into the model's parameters and buffers in place (dtype and device converted)."""
    import torch

    state = as_state_dict(state_dict_or_path)
    own = model.state_dict(keep_vars=True)
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ConfigError(f"the weights name {len(unknown)} tensors the model lacks, e.g. {unknown[0]!r}")
    loaded = {own[name].data_ptr() for name in state}
    missing = [name for name in own if name not in state and own[name].data_ptr() not in loaded]
    if missing:
        raise ConfigError(f"the weights lack {len(missing)} of the model's tensors, e.g. {missing[0]!r}")
    wrong = [name for name, tensor in state.items() if tuple(tensor.shape) != tuple(own[name].shape)]
    if wrong:  # checked before any copy: an update applies whole or not at all
        name = wrong[0]
        shapes = tuple(state[name].shape), tuple(own[name].shape)
        raise ConfigError(f"{name}: shape {shapes[0]}, the model's is {shapes[1]}")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].data.copy_(tensor.to(device=own[name].device, dtype=own[name].dtype))
