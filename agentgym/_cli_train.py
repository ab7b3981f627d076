"""``agentgym train`` and ``agentgym sft``: RL training and the SFT warm start from YAML configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

_SET_HELP = "Override a config key, dotted: --set loss.clip_high=0.28 (repeatable; values are YAML)."


def _release_unused(claimed: Path | None) -> None:
    """Remove a default run directory that ``new_run_dir`` claimed but the run never wrote."""
    if claimed is not None and claimed.is_dir() and not any(claimed.iterdir()):
        claimed.rmdir()


def _keys_table(kind: Any) -> None:
    """Print every config key with its default and help text (taken from the config model)."""
    from pydantic import BaseModel
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str, defaults: Any = None) -> None:
        # defaults: the section's default instance, whose values may differ from its class's (credit: gigpo)
        for name, field in model.model_fields.items():
            ann = field.annotation
            nested = next((c for c in (ann, *getattr(ann, "__args__", ())) if isinstance(c, type) and issubclass(c, BaseModel)), None)
            default = getattr(defaults, name) if defaults is not None else field.get_default(call_default_factory=True)
            if nested is not None:
                walk(nested, f"{prefix}{name}.", default)
            else:
                rows.append((f"{prefix}{name}", repr(default), _with_choices(field.description or "", ann)))

    walk(kind, "")
    table = Table(title=f"{kind.__name__} keys")
    # keys are never cut with "…" (in a pipe's 80 columns too); the help column wraps instead
    table.add_column("key", no_wrap=True, min_width=max(len(key) for key, _, _ in rows))
    table.add_column("default", overflow="fold")
    table.add_column("help", overflow="fold")
    for row in rows:
        table.add_row(*map(Text, row))  # plain text: 'agentgym[distributed]' is no markup
    Console().print(table)


def _with_choices(help_text: str, annotation: Any) -> str:
    """``help_text`` plus the values a ``Literal`` key (optionally ``| None``) accepts."""
    from typing import Literal, get_args, get_origin

    literal = next((a for a in (annotation, *get_args(annotation)) if get_origin(a) is Literal), None)
    if literal is None:
        return help_text
    choices = ", ".join(repr(v) for v in get_args(literal))
    return f"{help_text} One of: {choices}." if help_text else f"One of: {choices}."


def _load(kind: Any, config: Optional[Path], sets: Optional[list[str]], extra: dict[str, Any]) -> Any:
    from agentgym.trainers.config import load_config, parse_overrides

    overrides = parse_overrides(sets)
    for key, value in extra.items():  # as typed, not read as YAML ('runs/q #1' keeps its '#1')
        if value is not None:
            *sections, name = key.split(".")
            node = overrides
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = value
    return load_config(config, overrides, kind=kind)


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``sft`` commands to ``app``."""

    @app.command("train", short_help="Train a policy with RL (GiGPO, GRPO, RLOO) as a config says.")
    def train(
        config: Optional[Path] = typer.Argument(None, help="Run config (YAML). Optional with --resume."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in RUN_DIR from its newest checkpoint."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default: runs/<name>-<time>)."),
        keys: bool = typer.Option(False, "--keys", help="List every config key with its default and help, then exit."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    ) -> None:
        """Train a policy with RL (GiGPO, GRPO, RLOO) as CONFIG says; optional SFT warm start first.

        Writes RUN_DIR/config.yaml, metrics.jsonl, trajectories/ and checkpoints/. A killed run
        continues with --resume RUN_DIR and ends with the same number of steps; settings a resume
        changes (--set) are recorded in config-changes.jsonl.
        """
        from agentgym.errors import AgentGymError
        from agentgym.policies.hf import hf_progress
        from agentgym.trainers.config import TrainConfig

        if keys:
            _keys_table(TrainConfig)
            return
        hf_progress(progress)
        if config is None and resume is None:
            raise typer.BadParameter("give a CONFIG file (see examples/household_quickstart.yaml) or --resume RUN_DIR",
                                     param_hint="'CONFIG'")
        cfg, claimed = None, None
        try:
            if resume is not None:
                from agentgym.store import read_run_config
                from agentgym.trainers.rl import check_resumable

                if run_dir is not None:
                    raise typer.BadParameter("a resumed run stays in its directory; leave --run-dir out",
                                             param_hint="'--run-dir'")
                check_resumable(resume)
                cfg = _load(TrainConfig, config, set_, {}) if config is not None else None
                if cfg is None:
                    from agentgym.trainers.config import load_config

                    saved = read_run_config(resume)
                    if not saved:
                        raise AgentGymError(f"--resume {resume}: the run has no config.yaml; pass the CONFIG too")
                    cfg = load_config(saved, list(set_ or []), saved=True)
            else:
                cfg = _load(TrainConfig, config, set_, {"run_dir": str(run_dir) if run_dir else None})
            from agentgym.trainers.rl import new_run_dir, train as run_training

            if resume is None and not cfg.run_dir:  # fixed now, so an interrupted run can say where it is
                claimed = new_run_dir(cfg)
                cfg = cfg.model_copy(update={"run_dir": str(claimed)})
            out = run_training(cfg, resume=resume, progress=progress)
        except AgentGymError as exc:
            _release_unused(claimed)
            _fail(exc)
        except KeyboardInterrupt:
            target = resume or (cfg.run_dir if cfg is not None else None)
            if target is not None and (Path(target) / "config.yaml").exists():
                typer.echo(f"interrupted; continue with: agentgym train --resume {target}", err=True)
            else:
                _release_unused(claimed)
                typer.echo("interrupted before the run started", err=True)
            raise typer.Exit(130) from None
        typer.echo(f"run directory: {out}")
        typer.echo(f"step through its episodes: agentgym replay {out}; evaluate it again: agentgym eval {out}")

    @app.command("sft", short_help="Supervised warm start on expert trajectories.")
    def sft(
        config: Optional[Path] = typer.Argument(None, help="SFT config (YAML): policy, sft.data, schedule."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help=_SET_HELP.replace("loss.clip_high=0.28", "sft.epochs=3")),
        data: Optional[list[Path]] = typer.Option(None, "--data", help="Expert run directory or .jsonl (replaces sft.data)."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default: runs/<name>-<time>)."),
        keys: bool = typer.Option(False, "--keys", help="List every config key with its default and help, then exit."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    ) -> None:
        """Supervised warm start on expert trajectories (from `agentgym rollout --policy expert`).

        Loss only on the agent's turns; saves the model to RUN_DIR/model (use it as hf:RUN_DIR/model).
        """
        from agentgym.errors import AgentGymError
        from agentgym.policies.hf import hf_progress
        from agentgym.trainers.config import SFTConfig

        if keys:
            _keys_table(SFTConfig)
            return
        hf_progress(progress)
        if config is None:
            raise typer.BadParameter("give an SFT config (see examples/household_sft.yaml)", param_hint="'CONFIG'")
        cfg, claimed = None, None
        try:
            extra: dict[str, Any] = {"run_dir": str(run_dir) if run_dir else None}
            if data:
                extra["sft.data"] = [str(d) for d in data]
            cfg = _load(SFTConfig, config, set_, extra)
            from agentgym.trainers.rl import new_run_dir
            from agentgym.trainers.sft import run_sft

            if not cfg.run_dir:  # fixed now, so Ctrl-C can name it
                claimed = new_run_dir(cfg)
                cfg = cfg.model_copy(update={"run_dir": str(claimed)})
            out = run_sft(cfg, progress=progress)
        except AgentGymError as exc:
            _release_unused(claimed)
            _fail(exc)
        except KeyboardInterrupt:
            _release_unused(claimed)
            model = Path(cfg.run_dir) / "model" if cfg is not None and cfg.run_dir else None
            if model is not None and model.is_dir():
                typer.echo(f"interrupted after the model was saved in {model}", err=True)
            else:
                where = f" in {cfg.run_dir}" if model is not None else ""
                typer.echo(f"interrupted: no model was saved{where}; SFT does not resume, run the command again",
                           err=True)
            raise typer.Exit(130) from None
        typer.echo(f"run directory: {out}")
