"""``agentgym bench``: run the benchmark scripts in ``bench/`` and show the figures they print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _bench_dir() -> Path:
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (root / "bench").is_dir():
            return root / "bench"
    raise typer.BadParameter("no bench/ folder here: run `agentgym bench` from an agentgym checkout")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""

    @app.command("bench", short_help="Run a benchmark; it prints its figures.")
    def bench(names: Optional[list[str]] = typer.Argument(None, help="Benchmarks to run (e.g. credit household); "
                                                                      "all when omitted.")) -> None:
        """Run benchmarks (bench/bench_*.py); each prints its figures."""
        import subprocess
        import sys

        folder = _bench_dir()
        available = {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}
        chosen = names or list(available)
        unknown = [n for n in chosen if n not in available]
        if unknown:
            raise typer.BadParameter(f"unknown benchmark(s) {unknown}; available: {', '.join(available)}")
        failed = []
        for name in chosen:
            typer.secho(f"== {name} ({available[name].relative_to(folder.parent)})", bold=True)
            child = subprocess.Popen([sys.executable, str(available[name])])
            try:
                code = child.wait()
            except KeyboardInterrupt:  # the benchmark got the signal too: let it clean up (a second one kills it)
                try:
                    child.wait()
                except KeyboardInterrupt:
                    child.kill()
                done = f"; failed before it: {', '.join(failed)}" if failed else ""
                typer.echo(f"interrupted during {name}{done}", err=True)
                raise typer.Exit(130) from None
            if code != 0:
                failed.append(name)
        if failed:
            typer.secho(f"failed: {', '.join(failed)}", fg="red")
            raise typer.Exit(1)
