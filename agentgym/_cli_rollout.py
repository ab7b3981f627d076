"""``agentgym rollout``: play a task suite with a policy and write a run directory."""

from __future__ import annotations

import contextlib
import math
import re
import time
from pathlib import Path
from typing import Any, Optional

import typer


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 < value < math.inf:  # NaN fails too
        raise typer.BadParameter(f"{value:g} is not a positive number")
    return value


def _probability(value: float) -> float:
    if not 0 < value <= 1:
        raise typer.BadParameter(f"{value:g} is not in (0, 1]")
    return value


def _env_options(items: list[str], env_class: Any) -> dict[str, Any]:
    """``["backend=postgres", "max_rows=5"]`` as keyword options, read as YAML (5 is a number, ``{a: 1}`` a
    dict, ``null`` None), except that text stays as typed where the environment's parameter takes a ``str``
    (a DSN with ``#`` or ``:`` in it; quotes around it are taken off)."""
    import typing

    from agentgym.errors import ConfigError
    from agentgym.trainers.config import yaml_value

    try:
        hints = typing.get_type_hints(env_class.__init__)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: read every value as YAML
        hints = {}
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--env-option expects KEY=VALUE with KEY a keyword of the environment, got {item!r}")
        hint = hints.get(key)
        if hint is str:
            options[key] = raw
            continue
        takes_text = str in typing.get_args(hint)
        try:
            value = yaml_value(raw, f"--env-option {item!r}", f"--env-option '{key}=\"{raw}\"'")
        except ConfigError:  # '#...' reads as null
            if not takes_text:
                raise
            value = raw
        quoted = len(raw) > 1 and raw[0] == raw[-1] and raw[0] in "'\""
        if takes_text and isinstance(value, str) and not quoted:
            value = raw  # text as typed where the parameter takes text: YAML would cut a DSN at '#'
        options[key] = value
    return options


def _status(console: Any, message: str, show: bool) -> Any:
    """A spinner while ``message`` is under way, or nothing under ``--no-progress``."""
    return console.status(message) if show else contextlib.nullcontext()


def register(app: typer.Typer) -> None:
    """Add the ``rollout`` command to ``app``."""

    @app.command("rollout", short_help="Play a policy on a task suite; record and summarize it.")
    def rollout(
        env: str = typer.Option("household-v0", help="Environment id (see `agentgym envs`)."),
        suite: Optional[str] = typer.Option(None, help="Task suite of the environment (default: its held-out "
                                                       "test-unseen, else test)."),
        policy: str = typer.Option("smollm2", help="expert, random, smollm2, hf:/path, openai:URL#model or vllm:/path."),
        n: int = typer.Option(1, min=1, help="Samples per task (one group)."),
        limit: Optional[int] = typer.Option(None, min=1, help="Play only the first N tasks of the suite."),
        out: Optional[str] = typer.Option(None, help="Run directory (default: "
                                                     "runs/rollout-<env>-<suite>-<policy>-<time>)."),
        max_turns: Optional[int] = typer.Option(None, min=1, help="Agent-turn limit (the task's own limit applies too)."),
        step_timeout: float = typer.Option(60.0, callback=_positive, help="Seconds for one environment call."),
        episode_timeout: Optional[float] = typer.Option(None, callback=_positive, help="Seconds for a whole episode."),
        temperature: float = typer.Option(1.0, min=0, help="Sampling temperature (0 = greedy)."),
        top_p: float = typer.Option(1.0, callback=_probability, help="Nucleus sampling mass."),
        max_new_tokens: int = typer.Option(64, min=1, help="Tokens per model turn."),
        context: str = typer.Option("full", help="Context manager: full, window:K or summary:LIMIT[:MAX_SUMMARIES]."),
        concurrency: int = typer.Option(64, min=1, help="Episodes alive at once."),
        tool_schema: bool = typer.Option(True, help="Show the tool specs in the prompt (off: plain-text actions, shorter prompts)."),
        seed: int = typer.Option(0, help="Base seed of the episodes."),
        ray_hosts: int = typer.Option(0, min=0, help="Run the environments in this many Ray actors (0: in this "
                                                     "process); needs agentgym[distributed]."),
        ray_address: Optional[str] = typer.Option(None, help="Ray cluster for --ray-hosts ('auto', "
                                                            "'ray://head:10001'; default: a new local Ray)."),
        ray_cpus_per_host: float = typer.Option(1.0, min=0, help="CPUs each environment host reserves from Ray "
                                                                 "(fractions allowed)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar and spinners."),
        plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="Module ('my_envs', found here too) or "
                                                   "'module:function' to load first: it registers your environments "
                                                   "(repeatable)."),
        env_option: Optional[list[str]] = typer.Option(None, "--env-option", metavar="KEY=VALUE",
                                                       help="An option of the environment, as a training config's "
                                                            "env.options (repeatable; e.g. backend=postgres)."),
    ) -> None:
        """Roll out a policy on a task suite; print success rate, mean turns, invalid actions and failures."""
        import asyncio

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.text import Text

        from agentgym.context import Summarize, context_factory
        from agentgym.errors import AgentGymError, ConfigError
        from agentgym.policies import SamplingParams, load_policy
        from agentgym.policies.hf import hf_progress
        from agentgym.registry import check_options, load_plugins, load_tasks, spec, suites
        from agentgym.rollout import RolloutRunner
        from agentgym.store import RunStore, claim_run_dir

        console = Console()
        hf_progress(progress)
        # every check of the flags comes before the policy loads (seconds for a model): usage errors exit 2
        try:
            load_plugins(plugin or [], "--plugin")
            if suite is None:
                names = suites(env)
                suite = next((s for s in ("test-unseen", "test") if s in names), None)
                if suite is None:
                    raise ConfigError(
                        f"environment {env!r} has no held-out suite test-unseen or test: name one with --suite "
                        f"(its suites: {', '.join(sorted(names))})" if names else
                        f"environment {env!r} has no task suites: give it some where it is registered, "
                        "e.g. ag.register(id, MyEnv, suites={'test': 'tasks.jsonl'}), or a function returning Tasks")
            env_options = _env_options(env_option or [], spec(env).load())
            env_options = check_options(env, env_options, "--env-option")
            tasks = load_tasks(env, suite)[:limit] if limit is not None else load_tasks(env, suite)
            if not tasks:
                raise ConfigError(f"task suite {suite!r} of {env} holds no tasks")
            sampling = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        except (AgentGymError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        try:
            if isinstance(context_factory(context)(), Summarize) and policy in ("expert", "random"):
                raise ConfigError(f"summarization needs a model policy; the {policy} policy cannot write summaries")
            roles = getattr(spec(env).load(), "agents", None) or {}
            if isinstance(context_factory(context)(), Summarize) and len(roles) > 1:
                raise ConfigError(f"summarization works on one conversation, and {env} has several agents "
                                  f"({', '.join(roles)}), each with its own: use full or window:K")
        except AgentGymError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--context'") from None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", policy).strip("-")[:40]
        root = Path(out or f"runs/rollout-{env}-{suite}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}")
        if out is not None and root.exists() and (not root.is_dir() or any(root.iterdir())):
            what = "is not a directory" if not root.is_dir() else "already holds files (another run's?)"
            raise typer.BadParameter(f"{root} {what}; choose a new --out or remove it", param_hint="'--out'")
        config = {"command": "rollout", "env": env, "suite": suite, "policy": policy, "n": n, "limit": limit,
                  "max_turns": max_turns, "step_timeout": step_timeout, "episode_timeout": episode_timeout,
                  "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "context": context,
                  "concurrency": concurrency, "seed": seed, "tool_schema": tool_schema, "plugins": plugin or [],
                  "env_options": env_options,
                  "ray_hosts": ray_hosts, "ray_address": ray_address, "ray_cpus_per_host": ray_cpus_per_host}
        done = {"n": 0, "ok": 0, "failed": 0}
        stores: list[RunStore] = []

        if ray_address is not None and not ray_hosts:
            raise typer.BadParameter("--ray-address names the cluster for --ray-hosts N; give both",
                                     param_hint="'--ray-address'")
        pool = None
        if ray_hosts:
            from agentgym.trainers.ray_envs import RayEnvPool

            try:
                with _status(console, f"starting {ray_hosts} environment hosts", progress):
                    pool = RayEnvPool(ray_hosts, address=ray_address, num_cpus=ray_cpus_per_host)
            except AgentGymError as exc:
                raise typer.BadParameter(str(exc), param_hint="'--ray-hosts' / '--ray-address'") from None
            except KeyboardInterrupt:
                console.print("interrupted while starting the environment hosts; nothing was run")
                raise typer.Exit(130) from None
        loaded = None
        try:
            with _status(console, f"loading policy {policy}", progress):
                loaded = load_policy(policy)
            if policy.startswith("hf:"):  # pin what a run directory's name meant at this moment
                from agentgym.policies.hf import model_source

                base, adapters = model_source(policy.removeprefix("hf:"))
                config["model"] = [str(p) for p in (base, *adapters)]
            runner = RolloutRunner(loaded, pool.envs(env, **env_options) if pool else env, n=n, concurrency=concurrency,
                                   max_turns=max_turns, step_timeout=step_timeout, episode_timeout=episode_timeout,
                                   context=context, sampling=sampling, seed=seed, tool_schema=tool_schema,
                                   env_options=env_options)
            runner.check(tasks)  # e.g. the expert policy on an environment without expert_action()
        except BaseException as exc:
            if loaded is not None:
                asyncio.run(loaded.aclose())  # a remote policy's connections, a model's threads
            if pool is not None:
                pool.close()
            if not isinstance(exc, (AgentGymError, KeyboardInterrupt)):
                raise
            if isinstance(exc, KeyboardInterrupt):
                console.print("interrupted while loading the policy; nothing was run")
                raise typer.Exit(130) from None
            raise typer.BadParameter(str(exc), param_hint="'--policy'") from None

        async def main() -> dict:
            try:
                check = getattr(loaded, "check", None)  # a remote policy: is the server there, with the model?
                if check is not None:
                    with _status(console, f"checking {policy}", progress):
                        await check()
                # only now: a rejected command leaves no run directory behind; a default name taken by a run
                # started in the same second gets a suffix
                store = RunStore(root if out is not None else claim_run_dir(root))
                try:
                    store.write_config(config, exclusive=True)
                except FileExistsError:  # another run took --out while the policy loaded
                    raise ConfigError(f"{root} already holds another run's files; choose a new --out") from None
                stores.append(store)
                runner.store = store
                columns = [TextColumn("[bold]rollout"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("success {task.fields[success]:.0%}  failed {task.fields[failed]}"),
                           TimeElapsedColumn()]
                with Progress(*columns, console=console, disable=not progress) as bars:
                    bar = bars.add_task("episodes", total=len(tasks) * n, success=0.0, failed=0)

                    def advance(traj) -> None:
                        done["n"] += 1
                        done["ok"] += traj.success
                        done["failed"] += traj.error is not None
                        bars.update(bar, advance=1, success=done["ok"] / done["n"], failed=done["failed"])

                    result = await runner.run(tasks, on_trajectory=advance)
                return result.summary()
            finally:
                await loaded.aclose()

        try:
            summary = asyncio.run(main())
        except AgentGymError as exc:
            console.print(Text.assemble(("error: ", "red"), str(exc)))  # plain text: no markup or emoji codes
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            saved = f"; {done['n']} finished episodes are in {stores[0].root}" if stores else ""
            console.print(f"interrupted{saved}")
            raise typer.Exit(130) from None
        finally:
            if pool is not None:
                pool.close()
        store = stores[0]
        store.append_metrics({"event": "rollout", **summary})
        console.print(Text.assemble((f"{summary['episodes']} episodes", "bold"),
                                    f" of {env}/{suite} with {policy} in {summary['elapsed_s']:.1f} s -> {store.root}"))
        console.print(f"success rate        {summary['success_rate']:.1%}")
        console.print(f"mean reward         {summary['mean_reward']:.3f}")
        console.print(f"mean turns          {summary['mean_turns']:.2f}")
        console.print(f"invalid-action rate {summary['invalid_action_rate']:.1%}")
        if summary["overlong"]:
            console.print(f"overlong            {summary['overlong']}")
        console.print(f"failures            {summary['failed']}")
        for reason, count in list(summary["failures"].items())[:5]:
            console.print(Text(f"  {count} x {reason}"))
            if reason in summary["failed_at"]:  # the traceback is in the trajectory's metadata
                console.print(Text(f"      at {summary['failed_at'][reason]}"))
        for reason, count in summary["store_errors"].items():
            console.print(Text(f"not stored: {count} x {reason}", style="red"))
        if summary["episodes"] and summary["failed"] == summary["episodes"]:
            console.print(Text("error: every episode failed; see the failures above", style="red"))
            raise typer.Exit(1)
