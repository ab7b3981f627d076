"""``agentgym replay``: a run's trajectories in the browser, step by step."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``replay`` command to ``app``."""

    @app.command("replay", short_help="Step through a run's trajectories in the browser.")
    def replay(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run directory of agentgym train, sft, rollout "
                                                                    "or eval."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8765, min=0, max=65535, help="Port to listen on (0 picks a free one)."),
        open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    ) -> None:
        """Serve a page that replays RUN_DIR's episodes: every step's prompt, response, action,
        observation, reward and milestones, with the advantage the trainer gave it (RL runs), and the
        run's metrics over training. Files that grow (a run in progress) are re-read."""
        import asyncio
        import errno
        import webbrowser

        from rich.console import Console
        from rich.text import Text

        from agentgym.errors import ConfigError
        from agentgym.replay import ReplayServer

        console = Console(highlight=False)
        try:
            server = ReplayServer(run_dir, host=host, port=port)
        except ConfigError as exc:
            Console(stderr=True).print(f"error: {exc}", markup=False, style="red", soft_wrap=True)
            raise typer.Exit(2) from None

        async def main() -> None:
            async with server:
                console.print(Text.assemble("replaying ", (str(run_dir), "bold"), f" at {server.url} (Ctrl-C to stop)"),
                              soft_wrap=True)
                if open_browser and not webbrowser.open(server.url):
                    console.print("no browser to open here: open the address above in one")
                await asyncio.Event().wait()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        except OSError as exc:  # the port is taken, or the address is not this machine's
            hint = " (pass --port 0 for a free port)" if exc.errno == errno.EADDRINUSE else ""
            Console(stderr=True).print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}",
                                       markup=False, style="red", soft_wrap=True)
            raise typer.Exit(1) from None
