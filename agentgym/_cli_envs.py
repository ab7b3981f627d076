"""``agentgym envs``: the registered environments, their tools and task suites."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``envs`` command to ``app``."""

    @app.command("envs", short_help="List environments, their tools and task suites.")
    def envs(
        plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Module ('my_envs', found here too) or "
                                                   "'module:function' that registers environments (repeatable)."),
    ) -> None:
        """List registered environments with their tools and task-suite sizes."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from agentgym import registry
        from agentgym.errors import ConfigError

        try:
            registry.load_plugins(plugin or [], "--plugin")
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None

        table = Table(title="agentgym environments", show_lines=True)
        table.add_column("id")
        table.add_column("tools")
        table.add_column("task suites")
        for spec in registry.registered():
            about = spec.description
            try:
                env_class = spec.load()
                about = about or (env_class.__doc__ or "").strip().split("\n")[0]
                tools = ", ".join(env_class._tools)
                if len(env_class.agents) > 1:
                    tools += f" (agents: {', '.join(env_class.agents)})"
            except Exception as exc:  # a broken plug-in should not hide the others
                tools = f"[red]cannot load: {exc}[/red]"
            suites = ", ".join(f"{name} ({registry.count_tasks(spec.id, name)})" for name in sorted(spec.suites))
            table.add_row(Text.assemble((spec.id, "bold"), *(("\n", (about, "dim")) if about else ())), tools,
                          suites or "-")
        Console().print(table)
