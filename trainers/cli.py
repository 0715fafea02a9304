"""`orchard-train`: fine-tune models on recorded episodes (`orchard-train sft --help`).

The flags of `sft` are generated from `SFTConfig`'s fields (name, type, default and help), so a setting lives
in exactly one place.
"""

from __future__ import annotations

import inspect
import json
import os
import types
import typing
from typing import Any, Literal

import typer
from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from orchard_envs.cli_support import fail, typer_app
from orchard_envs.trainers.config import SFTConfig

PROGRAM = "orchard-train"
app = typer_app(PROGRAM, "Train models on Orchard episodes: supervised fine-tuning (sft).")
# Click's plain help: rich's option table cuts long flags (`--credit-assignm…`) at 80 columns; this wraps.
app.rich_markup_mode = None


@app.callback()
def _group() -> None:
    """Subcommands stay subcommands while there is only one (`orchard-train sft ...`)."""


def _sft(**flags: Any) -> None:
    """Fine-tune a model on recorded episodes; writes a Hugging Face checkpoint to --out."""
    from orchard_envs.errors import OrchardError
    from orchard_envs.trainers.sft import Interrupted, train

    flags["episodes"] = [*flags["episodes"], *(flags.pop("more_episodes") or [])]
    try:
        config = SFTConfig(**{key: value for key, value in flags.items() if value is not None})
    except ValidationError as exc:
        fail(PROGRAM, "; ".join(_problem(error) for error in exc.errors()) or str(exc))
    try:
        result = train(config)
    except Interrupted as exc:
        fail(PROGRAM, str(exc), code=130)
    except OrchardError as exc:
        fail(PROGRAM, str(exc))
    except KeyboardInterrupt:  # before the training loop (loading data or the model), or a second Ctrl-C
        fail(
            PROGRAM,
            "interrupted; rerun with --resume to continue from the last saved state, if any",
            code=130,
        )
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one report, not one per process
        report = {"out": str(result.out), "steps": result.steps, "loss": result.final_loss, **result.data}
        typer.echo(json.dumps(report))


def _problem(error: Any) -> str:
    """A pydantic error in the words of the command line: the flag, then what is wrong."""
    message = error["msg"].removeprefix("Value error, ")
    flag = ".".join(map(str, error["loc"])).replace("_", "-")
    return f"--{flag}: {message}" if flag else message


def _flag_type(annotation: Any) -> Any:
    """The type typer parses: choices arrive as text (pydantic checks them), optional values stay optional."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        return _flag_type(inner[0]) | None
    return annotation


def _option(name: str, field: Any) -> inspect.Parameter:
    """A typer option for one config field: `--name`, booleans as `--name/--no-name`."""
    flag = "--" + name.replace("_", "-")
    annotation = _flag_type(field.annotation)
    if field.default is PydanticUndefined and field.default_factory is None:
        default: Any = ...
    else:
        default = None if field.default_factory is not None else field.default
    declared = f"{flag}/--no-{flag[2:]}" if annotation is bool else flag
    option = typer.Option(default, declared, help=field.description or "")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


# A shell expands `--episodes runs/*/episodes.jsonl` into several words: the ones after the first arrive here.
_MORE_EPISODES = inspect.Parameter(
    "more_episodes",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Argument(None, hidden=True),
    annotation=list[str] | None,
)
_sft.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_option(name, field) for name, field in SFTConfig.model_fields.items()] + [_MORE_EPISODES]
)
app.command("sft")(_sft)


def main() -> None:
    """The `orchard-train` console script."""
    app()


if __name__ == "__main__":
    main()
