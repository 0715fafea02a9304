"""`orchard-bench`: run agents over suites and rank the results (`orchard-bench --help`)."""

from __future__ import annotations

import typer

from orchard_envs.cli_support import typer_app
from orchard_envs.leaderboard.commands import export, leaderboard, report, show
from orchard_envs.leaderboard.run import run

app = typer_app("orchard-bench", "Score agents and models on Orchard's suites; rank and report the runs.")
app.command()(run)
app.command()(leaderboard)
app.command()(report)
app.command()(export)
app.command()(show)


@app.command("list")
def list_everything() -> None:
    """Suites, envs, harnesses and agents, one line each."""
    from orchard_envs.leaderboard.listing import listing

    typer.echo(listing())


def main() -> None:
    """The `orchard-bench` console script."""
    app()


if __name__ == "__main__":
    main()
