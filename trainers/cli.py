"""`orchard-train`: fine-tune models on recorded episodes (`sft`) or by RL on live envs (`grpo`).

The flags of each command are generated from its config's fields (`SFTConfig`, `GRPOConfig`: name, type,
default and help), so a setting lives in exactly one place.
"""

from __future__ import annotations

import inspect
import json
import os
import types
import typing
from typing import Any, Literal

import typer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from orchard_envs.cli_support import fail, typer_app
from orchard_envs.trainers.config import SFTConfig
from orchard_envs.trainers.grpo_config import GRPOConfig

PROGRAM = "orchard-train"
app = typer_app(
    PROGRAM, "Train models on Orchard episodes (sft) or by RL on Orchard envs (grpo); --help on each."
)
# Click's plain help: rich's option table cuts long flags (`--credit-assignm…`) at 80 columns; this wraps.
app.rich_markup_mode = None


def _sft(**flags: Any) -> None:
    """Fine-tune a model on recorded episodes; writes a Hugging Face checkpoint to --out."""
    from orchard_envs.trainers.sft import train

    flags["episodes"] = [*flags["episodes"], *(flags.pop("more_episodes") or [])]
    result = _run(train, _config(SFTConfig, flags))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one report, not one per process
        report = {"out": str(result.out), "steps": result.steps, "loss": result.final_loss, **result.data}
        typer.echo(json.dumps(report))


def _grpo(**flags: Any) -> None:
    """RL on live envs (GRPO, Dr. GRPO or DAPO); writes a Hugging Face checkpoint to --out."""
    from orchard_envs.trainers.grpo import train

    result = _run(train, _config(GRPOConfig, flags))
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps({"out": str(result.out), "steps": result.steps, "reward": result.final_reward}))


def _config(kind: type[BaseModel], flags: dict[str, Any]) -> Any:
    """The typed config from the flags given; a mistake is one line naming the flag."""
    try:
        return kind(**{key: value for key, value in flags.items() if value is not None})
    except ValidationError as exc:
        fail(PROGRAM, "; ".join(_problem(error) for error in exc.errors()) or str(exc))


def _run(train: Any, config: Any) -> Any:
    """Run a trainer; Ctrl-C and a user's mistake end with one line, never a traceback."""
    from orchard_envs.errors import OrchardError
    from orchard_envs.trainers.sft import Interrupted

    try:
        return train(config)
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
def _flags(kind: type[BaseModel]) -> list[inspect.Parameter]:
    return [_option(name, field) for name, field in kind.model_fields.items()]


_sft.__signature__ = inspect.Signature([*_flags(SFTConfig), _MORE_EPISODES])  # type: ignore[attr-defined]
_grpo.__signature__ = inspect.Signature(_flags(GRPOConfig))  # type: ignore[attr-defined]
app.command("sft")(_sft)
app.command("grpo")(_grpo)


def main() -> None:
    """The `orchard-train` console script."""
    app()


if __name__ == "__main__":
    main()
