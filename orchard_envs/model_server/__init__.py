"""`orchard-serve`: an OpenAI-compatible chat-completions server over a local `transformers` model.

It exists so trained checkpoints can be evaluated and collected from through the same `openai` agent as any
hosted model, with exact token ids (vLLM's `return_token_ids` convention), without needing vLLM.
Imports are lazy, so importing this package loads neither torch nor FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchard_envs.model_server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module("orchard_envs.model_server.app").create_app
