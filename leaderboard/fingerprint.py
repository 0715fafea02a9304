"""Which weights a run's agent samples from, recorded in the run's identity so a resume cannot mix models.

A local checkpoint folder (`hf:ckpt/NAME`, the embedded default, a hub model in the local cache) is
identified by a hash over its weight, config and tokenizer files: names, sizes and content, each file
streamed through SHA-256 (`hashlib.file_digest`, which reads in large blocks with the GIL released, so
shards hash in parallel). The hash is taken afresh on every start of a run: nothing is cached, so a
retrained folder is always seen.
A served model (`openai:MODEL`) is identified by what its server says about it: the model's id, and its
`root`, `parent` and `revision` where the server's `/v1/models` card names them.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# The files that decide what a checkpoint generates: weights, configs (model, generation, tokenizer, chat
# template), tokenizer vocabularies, remote code. Training bookkeeping written beside them is left out, so
# writing logs or optimizer state next to a checkpoint does not change its identity.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".ckpt", ".npz")
CONFIG_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".tiktoken", ".py")
BOOKKEEPING = frozenset(
    ("orchard_train.json", "trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt")
)
CARD_KEYS = ("root", "parent", "revision")  # what a /v1/models card may say about the weights behind an id


def checkpoint_files(folder: Path) -> list[Path]:
    """The top-level files of `folder` that decide its model, sorted by name (symlinks followed, as
    `from_pretrained` follows them in the hub cache)."""
    chosen = []
    for entry in Path(folder).iterdir():
        name = entry.name
        if name in BOOKKEEPING or name.startswith("rng_state") or not entry.is_file():
            continue
        if name.endswith(WEIGHT_SUFFIXES + CONFIG_SUFFIXES):
            chosen.append(entry)
    return sorted(chosen, key=lambda path: path.name)


def _file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256 of the content), the size taken from the open file so both describe the same file."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        return size, hashlib.file_digest(handle, "sha256").hexdigest()


def checkpoint_digest(folder: Path) -> dict[str, Any]:
    """{"sha256", "files", "bytes"} of a checkpoint folder: one SHA-256 over each chosen file's name, size
    and content hash. Shards are hashed on several threads (hashlib releases the GIL), combined in name
    order. Raises OSError if a file cannot be read."""
    files = checkpoint_files(folder)
    with ThreadPoolExecutor(max_workers=max(1, min(len(files), os.cpu_count() or 1))) as pool:
        digests = list(pool.map(_file_digest, files))
    outer = hashlib.sha256()
    for path, (size, content) in zip(files, digests, strict=True):
        outer.update(json.dumps([path.name, size, content]).encode() + b"\n")
    return {"sha256": outer.hexdigest(), "files": len(files), "bytes": sum(size for size, _ in digests)}


def local_weights(model: str) -> dict[str, Any]:
    """A model `from_pretrained` loads: a folder (hashed), a hub id in the local cache (its revision and
    hash), or else just its name ("unknown": nothing on this machine to hash)."""
    from orchard_envs.agents.hf_models import resolve_model

    path = resolve_model(model)
    if Path(path).is_dir():
        return {"source": "local", **checkpoint_digest(Path(path))}
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(repo_id=path, local_files_only=True)
    except Exception:  # not a hub id, not cached, or no huggingface_hub: nothing here names the weights
        return {"source": "unknown", "id": model}
    return {"source": "hub", "id": path, "revision": Path(snapshot).name, **checkpoint_digest(Path(snapshot))}


def served_weights(model: str, client: Any) -> dict[str, Any]:
    """What an OpenAI-compatible server says about `model` (its /v1/models card), without `created`,
    which a server resets on every restart."""
    try:
        cards = [card.model_dump() for card in client.models.list().data]
    except Exception:  # some servers have no /models; the id alone is then all that is known
        cards = []
    for fields in cards:
        if fields.get("id") == model:
            known = {key: fields[key] for key in CARD_KEYS if fields.get(key) is not None}
            return {"source": "served", "id": model, **known}
    return {"source": "served", "id": model}


def model_weights(policy: Any) -> dict[str, Any] | None:
    """The weights behind an agent, for the run's identity; None for agents without a model (scripted)."""
    model = str(getattr(policy, "model", "") or "")
    if not model:
        return None
    client = getattr(policy, "client", None)
    if client is not None and hasattr(client, "models"):
        return served_weights(model, client)
    return local_weights(model)


def describe_weights(weights: Any) -> str:
    """A short text for a refusal: `sha256 0123abcd4567 (3 files)`, `served my-model (root ...)`."""
    if not isinstance(weights, dict):
        return "no weights recorded" if weights is None else repr(weights)
    if weights.get("sha256"):
        at = f"{weights['id']}@{weights.get('revision')} " if weights.get("id") else ""
        return f"{at}sha256 {str(weights['sha256'])[:12]} ({weights.get('files')} files)"
    known = ", ".join(f"{key} {weights[key]}" for key in CARD_KEYS if weights.get(key))
    return f"{weights.get('source')} {weights.get('id')}" + (f" ({known})" if known else "")
