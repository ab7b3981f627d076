"""The ``agentgym`` command line (typer + rich).

Each command group lives in its own module with a ``register(app)`` function, listed in
``_COMMAND_MODULES``; modules import their heavy dependencies inside the command bodies so
``agentgym --help`` stays fast.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import signal
import warnings

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
    warnings.formatwarning = _format_warning
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    app()


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a cluster scheduler) stops a command as Ctrl-C does: episodes closed, browsers and
    sandboxes shut, and a training run says how to resume. ``agentgym serve`` installs its own."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):  # a background job ignores it
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)  # the handler in force: asyncio's cancels the running rollout first


_DEFAULT_FORMAT = warnings.formatwarning
_OWN_PACKAGES = ("agentgym", "agentgym.environments", "agentgym.tools", "agentgym.sandboxes", "agentgym.trainers",
                 "agentgym.tasks")  # folders of their own in a checkout (setuptools package-dir)


@functools.lru_cache(maxsize=1)
def _own_folders() -> tuple[str, ...]:
    folders = []
    for name in _OWN_PACKAGES:
        spec = importlib.util.find_spec(name)  # imports agentgym only, not the subpackage
        folders += [os.path.abspath(f) + os.sep for f in (spec.submodule_search_locations or [])] if spec else []
    return tuple(folders)


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """Our own warnings as one line, ``warning: ...`` (they say what to do); others as Python shows them."""
    if os.path.abspath(filename).startswith(_own_folders()):
        return f"warning: {message}\n"
    return _DEFAULT_FORMAT(message, category, filename, lineno, line)
