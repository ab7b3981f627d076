"""``agentgym serve``: an OpenAI-compatible HTTP server in front of a local model."""

from __future__ import annotations

import math
from typing import Optional

import typer


def _seconds(value: float) -> float:
    if not 0 <= value < math.inf:  # NaN fails too
        raise typer.BadParameter(f"{value:g} is not a number of seconds (0 or more)")
    return value


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve", short_help="Serve a local model over an OpenAI-compatible HTTP API.")
    def serve(
        policy: str = typer.Option("smollm2", help="smollm2 or hf:/path/to/model (a base model or a trained checkpoint)."),
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0 picks a free one)."),
        served_name: Optional[str] = typer.Option(
            None, help="Model name clients ask for (default: smollm2, or for hf:PATH the last part of PATH; the "
                       "first line printed says it)."),
        max_batch_size: int = typer.Option(8, min=1, help="Most requests generated together in one batch."),
        max_wait: float = typer.Option(0.01, callback=_seconds, help="Seconds to wait for a batch to fill."),
        tool_call_parser: Optional[str] = typer.Option(
            None, help="hermes: return <tool_call> blocks of a chat reply as message.tool_calls when the request has "
                       "tools (for OpenAI clients and agent frameworks; as vLLM's flag). Default: calls stay in the "
                       "text, exactly as sampled."),
    ) -> None:
        """Serve /v1/models, /v1/chat/completions and /v1/completions with token ids and logprobs.

        As in OpenAI's API, a matched stop string is cut from the text; include_stop_str_in_output: true
        (vLLM's field) keeps it, so that the text is exactly the sampled tokens. Logprobs are those of the
        sampling distribution (temperature and top-p applied).
        """
        import asyncio
        import socket

        if tool_call_parser not in (None, "hermes"):
            raise typer.BadParameter(f"{tool_call_parser!r}: the one parser is hermes", param_hint="'--tool-call-parser'")
        from rich.console import Console
        from rich.text import Text

        from agentgym.errors import AgentGymError
        from agentgym.policies import load_policy
        from agentgym.policies.server import PolicyServer, serve_forever

        console = Console()

        def fail(message: str) -> typer.Exit:
            console.print(Text.assemble(("error: ", "red"), message))  # plain text: no markup in paths
            return typer.Exit(1)

        # a busy port or an unknown host is reported now, not after the model has loaded (port 0: any free one)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # IPv4 or IPv6
            socket.create_server((host, port), family=family).close()
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        try:
            with console.status(f"loading {policy}"):
                loaded = load_policy(policy, max_batch_size=max_batch_size)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        except TypeError:  # a scripted policy takes no batch size
            raise typer.BadParameter(f"agentgym serve needs a local model policy (smollm2 or hf:/path), got {policy!r}",
                                     param_hint="'--policy'") from None
        except AgentGymError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--policy'") from None

        async def main() -> None:
            server = PolicyServer(loaded, served_name=served_name, host=host, port=port,
                                  max_batch_size=max_batch_size, max_wait=max_wait, tool_call_parser=tool_call_parser)
            await serve_forever(server, lambda s: console.print(
                Text.assemble("serving ", (s.served_name, "bold"), f" at {s.url} (Ctrl-C to stop)")))

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        except (AgentGymError, OSError) as exc:
            raise fail(str(exc)) from None
