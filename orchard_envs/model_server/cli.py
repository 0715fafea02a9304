"""`orchard-serve`: serve a local model (a trained checkpoint, a hub id in the cache, the embedded default)
over the OpenAI chat-completions API, so the `openai` agent can drive it like any hosted model."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from orchard_envs.agents.hf_models import DEFAULT_MODEL
from orchard_envs.cli_support import fail as cli_fail
from orchard_envs.cli_support import typer_app
from orchard_envs.errors import OrchardError

app = typer_app("orchard-serve", "Serve a local model over the OpenAI chat-completions API.")
app.info.no_args_is_help = False  # every option has a default: plain `orchard-serve` serves the default model


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit with one line on stderr, prefixed `orchard-serve:`."""
    cli_fail("orchard-serve", message, code)


def _looks_like_path(model: str) -> bool:
    """Hub ids are `org/name`; anything starting like a filesystem path is meant as one."""
    return model.startswith(("/", "./", "../", "~", ".\\")) or model in (".", "..")


@app.command()
def serve(
    model: str = typer.Option(
        DEFAULT_MODEL, help="Checkpoint directory or Hugging Face id (from the cache)."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    device: str | None = typer.Option(None, help="torch device (default: cuda if available, else cpu)."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    served_name: str | None = typer.Option(None, help="Model name clients send (default: --model)."),
    api_key: str | None = typer.Option(
        None, envvar="ORCHARD_SERVE_API_KEY", show_envvar=True, help="Require `Authorization: Bearer <key>`."
    ),
    default_max_tokens: int | None = typer.Option(
        None, min=1, help="Cap for requests without max_tokens (default: the rest of the context window)."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Load the model, then serve until interrupted."""
    source = str(Path(model).expanduser()) if _looks_like_path(model) else model
    if _looks_like_path(model) and not Path(source).is_dir():
        fail(f"model directory {model!r} does not exist")
    import uvicorn

    from orchard_envs.agents.hf_backend import HFGenerator
    from orchard_envs.model_server.app import create_app

    try:
        generator = HFGenerator(source, device=device, dtype=dtype)
        server = create_app(generator, served_name or model, api_key, default_max_tokens=default_max_tokens)
    except OrchardError as exc:
        fail(str(exc))
    except (OSError, ValueError) as exc:  # transformers' own complaints about a directory that isn't a model
        fail(f"cannot load model {model!r}: {' '.join(str(exc).split())}")
    if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"orchard-serve: warning: serving on {host} without an API key", err=True)
    uvicorn.run(server, host=host, port=port, log_level=log_level, timeout_keep_alive=120)


def main() -> None:
    """The `orchard-serve` console script."""
    app()
