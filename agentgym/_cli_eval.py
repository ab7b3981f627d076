"""``agentgym eval``: a trained run's model on held-out suites, under the run's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval", short_help="Evaluate a trained run's model on held-out suites, as the run plays.")
    def evaluate(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run directory of agentgym train or agentgym sft."),
        checkpoint: Optional[str] = typer.Option(None, help="Step number or step_N name (default: the newest "
                                                            "checkpoint, or an SFT run's model/)."),
        policy: Optional[str] = typer.Option(None, help="Evaluate this policy instead, under the run's settings "
                                                        "(smollm2 for the base model, expert, hf:/path, ...)."),
        suite: Optional[list[str]] = typer.Option(None, help="Suite to evaluate (repeatable; default: the run's "
                                                             "env.eval_suites)."),
        limit: Optional[int] = typer.Option(None, min=1, help="First N tasks of each suite (default: the run's "
                                                              "eval.max_tasks)."),
        samples: Optional[int] = typer.Option(None, min=1, help="Episodes per task (default: the run's eval.samples)."),
        device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
        out: Optional[Path] = typer.Option(None, help="Output run directory (default: runs/eval-<run>-<time>)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        ray_hosts: Optional[int] = typer.Option(None, min=0, help="Ray actors for the environments (default: the "
                                                                  "run's rollout.ray_hosts; 0: in this process)."),
    ) -> None:
        """Evaluate RUN_DIR's model as its training evaluated it: same environment, prompt, tool schema,
        context, turn limit, greedy-or-not sampling and episode seeds. The run is only read; results go
        to a new run directory."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        from agentgym.errors import AgentGymError, ConfigError, PolicyError, UnknownEnvironmentError, UnknownSuiteError
        from agentgym.policies.hf import hf_progress
        from agentgym.trainers.evaluate import evaluate_run

        console = Console(highlight=False)
        hf_progress(progress)
        output: list[Path] = []  # where the episodes go, once it exists
        try:
            root, summaries = evaluate_run(run_dir, policy=policy, checkpoint=checkpoint, suites=suite, limit=limit,
                                           samples=samples, device=device, out=out, progress=progress,
                                           ray_hosts=ray_hosts, on_output=output.append,
                                           log=lambda line: console.print(line, markup=False, soft_wrap=True))
        except AgentGymError as exc:  # what the command was given exits 2; a run that failed, 1
            Console(stderr=True).print(f"error: {exc}", markup=False, style="red", soft_wrap=True)
            usage = (ConfigError, PolicyError, UnknownEnvironmentError, UnknownSuiteError)
            raise typer.Exit(2 if isinstance(exc, usage) else 1) from None
        except KeyboardInterrupt:
            kept = f"; the episodes that finished are in {output[0]}" if output else ""
            console.print(f"interrupted{kept}", markup=False, soft_wrap=True)
            raise typer.Exit(130) from None
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)  # fits 80 columns
        for column in ("suite", "n", "success", "reward", "turns", "invalid", "overlong", "failed"):
            table.add_column(column, justify="left" if column == "suite" else "right", no_wrap=True)
        for name, s in summaries.items():
            table.add_row(name, str(s["episodes"]), f"{s['success_rate']:.1%}", f"{s['mean_reward']:.3f}",
                          f"{s['mean_turns']:.2f}", f"{s['invalid_action_rate']:.1%}", str(s["overlong"]),
                          str(s["failed"]))
        console.print(table)
        for name, s in summaries.items():
            for reason, count in list(s["failures"].items())[:5]:
                console.print(f"  {name}: {count} x {reason}", markup=False)
                if reason in s["failed_at"]:
                    console.print(f"      at {s['failed_at'][reason]}", markup=False)
        console.print(f"trajectories and metrics: {root}", markup=False, soft_wrap=True)
