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

    @app.command("bench", short_help="Run a benchmark; it prints its figures.",
                 context_settings={"ignore_unknown_options": True})  # the benchmark's own options pass through
    def bench(names: Optional[list[str]] = typer.Argument(
            None, metavar="[NAMES]... [OPTIONS OF ONE BENCHMARK]",
            help="Benchmarks to run (e.g. credit household); all when omitted. Options after one name go to "
                 "that benchmark: `agentgym bench rollout --skip-model`; `agentgym bench rollout -- --help` "
                 "lists them.")) -> None:
        """Run benchmarks (bench/bench_*.py); each prints its figures. With no names, all of them, the
        learning benchmark included (it trains a model: minutes with its defaults)."""
        import subprocess
        import sys

        folder = _bench_dir()
        available = {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}
        given = names or []
        first_option = next((i for i, word in enumerate(given) if word.startswith("-")), len(given))
        chosen, options = given[:first_option] or list(available), given[first_option:]
        unknown = [n for n in chosen if n not in available]
        if unknown:
            raise typer.BadParameter(f"unknown benchmark(s) {unknown}; available: {', '.join(available)}")
        if options and len(chosen) > 1:
            raise typer.BadParameter(f"options ({' '.join(options)}) go to one benchmark; name one of: "
                                     f"{', '.join(available)}")
        failed = []
        for name in chosen:
            typer.secho(f"== {name} ({available[name].relative_to(folder.parent)})", bold=True)
            child = subprocess.Popen([sys.executable, str(available[name]), *options])
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
