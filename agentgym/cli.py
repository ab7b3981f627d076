"""The ``agentgym`` command line (typer + rich).

Each command group lives in its own module with a ``register(app)`` function, listed in
``_COMMAND_MODULES``; modules import their heavy dependencies inside the command bodies so
``agentgym --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Build, run, evaluate and train LLM agents.", no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False, add_completion=False)

_COMMAND_MODULES = [
    "agentgym._cli_envs",
    "agentgym._cli_bench",
    "agentgym._cli_rollout",
    "agentgym._cli_eval",
    "agentgym._cli_replay",
    "agentgym._cli_serve",
    "agentgym._cli_train",
]


def _version(value: bool) -> None:
    if value:
        from agentgym import __version__

        typer.echo(f"agentgym {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """agentgym: multi-turn, tool-using agents trained with reinforcement learning."""


for _module in _COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Entry point of the ``agentgym`` script."""
    app()
