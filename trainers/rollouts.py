"""The trainer's side of rollout and credit: collect groups into the run directory, evaluate on
held-out suites, and turn ``agentgym.credit`` results into per-row advantages.

Trajectories are stored one file per training step (``trajectories/train-000012.jsonl``,
``trajectories/eval-test-unseen-000010.jsonl``), so a resumed run can drop exactly the steps that
came after its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
from collections import Counter
from typing import Any, Callable, Iterator

import numpy as np

from agentgym.errors import AgentGymError
from agentgym.store import RunStore
from agentgym.trainers.config import TrainConfig
from agentgym.types import Task, Trajectory

Row = tuple[int, int]


def training_tasks(config: TrainConfig) -> list[Task]:
    """The training suite's tasks."""
    from agentgym.registry import load_tasks

    return load_tasks(config.env.id, config.env.train_suite)


def check_inputs(config: Any, *, train_suite: bool, sft_data: bool = True, eval_key: str = "env.eval_suites") -> None:
    """Fail before a model loads or a run directory appears: the environment id, the suites the run
    reads (the training suite when ``train_suite``, the evaluation suites when it evaluates) and,
    when ``sft_data``, the SFT data paths. An ``env.eval_suites`` left unset becomes ``[test]`` for an
    environment that has ``test`` and no ``test-unseen``. ``eval_key`` names where the evaluation suites
    were given, in errors."""
    from agentgym.errors import ConfigError, UnknownSuiteError
    from agentgym.registry import check_options, spec

    env_spec = spec(config.env.id)
    suites = env_spec.suites
    config.env.options.update(check_options(config.env.id, config.env.options))  # text read as the type asked
    env_class = env_spec.load()
    if config.rollout.ray_hosts and importlib.util.find_spec("ray") is None:
        raise ConfigError(f"rollout.ray_hosts: {config.rollout.ray_hosts} environment hosts need Ray: "
                          "pip install 'agentgym[distributed]' (or set rollout.ray_hosts: 0)")
    device = str(getattr(getattr(config, "policy", None), "device", ""))
    if device and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise ConfigError(f"policy.device: {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"policy.device: {device!r}, but this torch sees no CUDA device; use cpu or auto")
    roles = list(getattr(env_class, "agents", None) or {}) or ["agent"]
    if config.context.type == "summary" and len(roles) > 1:
        raise ConfigError(f"context.type: summary works on one conversation, and {config.env.id} has several agents "
                          f"({', '.join(roles)}), each with its own: use context.type full or window")
    # whom training puts the loss on (an evaluation trains nobody: a saved run's setting is left alone)
    trained = getattr(getattr(config, "update", None), "train_agents", None) if train_suite else None
    if trained is not None and not trained:
        raise ConfigError(f"update.train_agents is empty: no agent would learn; name some of {', '.join(roles)}, "
                          "or leave it out (null) to train every agent")
    unknown = [a for a in trained or [] if a not in roles]
    if unknown:
        raise ConfigError(f"update.train_agents: {', '.join(map(repr, unknown))} is not an agent of {config.env.id}; "
                          f"its agents: {', '.join(roles)}")
    if "eval_suites" not in config.env.model_fields_set and "test-unseen" not in suites and "test" in suites:
        config.env.eval_suites = ["test"]  # the default held-out suite, as `agentgym rollout` picks it
    needed = [config.env.train_suite] if train_suite else []
    needed += list(config.env.eval_suites) if config.eval.every else []
    missing = [name for name in needed if name not in suites]
    if missing:
        key = "env.train_suite" if train_suite and missing[0] == config.env.train_suite else eval_key
        raise UnknownSuiteError(f"{key}: environment {config.env.id!r} has no task suite {missing[0]!r}; "
                                f"its suites: {', '.join(sorted(suites)) or '(none)'}")
    sft = getattr(config, "sft", None) if sft_data else None
    if sft is not None and sft.data:
        from agentgym.trainers.sft import data_files

        for source in sft.data:
            data_files(source)


def _cap(task: Task, horizon: int | None) -> Task:
    if horizon is None or horizon >= task.max_turns:
        return task
    return task.model_copy(update={"max_turns": horizon})


def _sampling(config: Any, *, evaluation: bool) -> Any:
    from agentgym.policies.base import SamplingParams

    s = config.sampling
    return SamplingParams(temperature=s.eval_temperature if evaluation else s.temperature,
                          top_p=1.0 if evaluation else s.top_p, max_new_tokens=s.max_new_tokens)


class Collector:
    """Runs groups of episodes with the policy and writes them to the run store."""

    def __init__(self, config: Any, policy: Any, store: RunStore, *, progress: bool = True) -> None:
        self.config, self.policy, self.store, self.progress = config, policy, store, progress
        self._pool = ray_pool(config)
        # one event loop for every rollout (not made the thread's current loop). On the main thread,
        # asyncio.Runner (3.11+) turns Ctrl-C into a cancelled rollout, which closes its episodes, and its
        # close() waits for the generation thread
        self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop) if hasattr(asyncio, "Runner") else None
        self._loop = self._runner.get_loop() if self._runner is not None else asyncio.new_event_loop()

    def close(self, *, policy: bool = False) -> None:
        """Close the event loop (and the environment hosts), and first the policy when ``policy``
        (one loaded for this collector)."""
        try:
            if policy:
                self._complete(self.policy.aclose())
            if self._runner is not None:
                self._runner.close()
            else:
                self._loop.close()
        finally:  # a second Ctrl-C while the loop closes must not leave the environment hosts running
            if self._pool is not None:
                self._pool.close()

    def _complete(self, work: Any) -> Any:
        """Run the coroutine ``work`` on the collector's loop; on Ctrl-C it is cancelled and awaited first."""
        if self._runner is not None:
            return self._runner.run(work)
        main = self._loop.create_task(work)
        try:
            return self._loop.run_until_complete(main)
        except BaseException:  # Ctrl-C: let the episodes close their environments, not be destroyed pending
            main.cancel()
            self._loop.run_until_complete(asyncio.gather(main, return_exceptions=True))
            raise

    def env_factory(self) -> Any:
        """The runner's environment factory: the Ray hosts' (``rollout.ray_hosts``), or None for in-process."""
        cfg = self.config
        return self._pool.envs(cfg.env.id, **cfg.env.options) if self._pool is not None else None

    def collect(self, tasks: list[Task], *, step: int, horizon: int | None, attempt: int = 0) -> list[Trajectory]:
        """``group_size`` episodes of each task, in task order; each group shares one group_id.
        ``attempt`` numbers a step's later rollouts (dynamic sampling): their own seed, the same file."""
        cfg = self.config
        tasks = [_cap(t, horizon) for t in tasks]
        params = _sampling(cfg, evaluation=False)
        seed = _seed(cfg.seed, step, 1) if not attempt else _seed(cfg.seed, step, 1, attempt)
        label = f"rollout {step}" if not attempt else f"rollout {step}, try {attempt + 1}"
        return self._run(tasks, cfg.rollout.group_size, params, name=f"train-{step:06d}", seed=seed, label=label,
                         step=step)

    def evaluate(self, *, step: int, tag: str | None = None) -> dict[str, float]:
        """Success and reward on each held-out suite (``<suite>/success`` ...).

        Trajectories go to ``eval-<suite>-<step>.jsonl``, or ``eval-<suite>-<tag>.jsonl``, replacing
        any earlier file of that name.
        """
        from agentgym.registry import load_tasks

        cfg = self.config
        out: dict[str, float] = {}
        for suite in cfg.env.eval_suites:
            tasks = load_tasks(cfg.env.id, suite)
            if cfg.eval.max_tasks is not None:
                tasks = tasks[:cfg.eval.max_tasks]
            params = _sampling(cfg, evaluation=True)
            name = f"eval-{suite}-{tag}" if tag else f"eval-{suite}-{step:06d}"
            # an evaluation a kill cut short is run again from scratch
            (self.store.trajectory_dir / f"{name}.jsonl").unlink(missing_ok=True)
            trajs = self._run(tasks, cfg.eval.samples, params, name=name,
                              seed=_seed(cfg.seed, step, 3), label=f"eval {suite}")
            for k, v in rollout_metrics(trajs).items():
                if k in ("success", "reward", "invalid_rate", "turns"):
                    out[f"{suite}/{k}"] = v
        return out

    def _run(self, tasks: list[Task], n: int, params: Any, *, name: str, seed: int, label: str,
             step: int | None = None) -> list[Trajectory]:
        from agentgym.rollout import RolloutRunner

        cfg = self.config
        runner = RolloutRunner(self.policy, self.env_factory(), n=n, concurrency=cfg.rollout.concurrency,
                               max_turns=cfg.env.max_turns,
                               step_timeout=cfg.rollout.step_timeout, episode_timeout=cfg.rollout.episode_timeout,
                               context=context_spec(cfg.context), sampling=params, store=self.store, store_name=name,
                               seed=seed, env_options=dict(cfg.env.options), tool_schema=cfg.rollout.tool_schema,
                               **_system_prompt(cfg))
        with progress_bar(label, len(tasks) * n, self.progress) as advance:
            result = self._complete(runner.run(tasks, step=step, on_trajectory=lambda _t: advance()))
        failed = [t.error for t in result.trajectories if t.error]
        if result.trajectories and len(failed) == len(result.trajectories):  # nothing to learn from or measure
            reason, count = Counter(failed).most_common(1)[0]
            where = next((t.metadata["error_at"] for t in result.trajectories
                          if t.error == reason and "error_at" in t.metadata), None)
            raise AgentGymError(f"every episode of {label} failed ({count} of them: {reason}"
                                f"{f', at {where}' if where else ''})")
        return result.trajectories


def ray_pool(config: Any) -> Any:
    """The environment hosts of ``rollout.ray_hosts`` (a :class:`~agentgym.trainers.ray_envs.RayEnvPool`), or None."""
    roll = config.rollout
    if not roll.ray_hosts:
        return None
    from agentgym.trainers.ray_envs import RayEnvPool

    return RayEnvPool(roll.ray_hosts, address=roll.ray_address, num_cpus=roll.ray_cpus_per_host)


def _system_prompt(cfg: Any) -> dict[str, Any]:
    sp = cfg.rollout.system_prompt
    return {} if sp is None else {"system_prompt": sp or None}


def context_spec(context: Any) -> str:
    """The rollout engine's context spec for a :class:`ContextSection`."""
    if context.type == "window":
        return f"window:{context.window}"
    if context.type == "summary":
        most = "" if context.max_summaries is None else f":{context.max_summaries}"
        return f"summary:{context.max_tokens}{most}"
    return "full"


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A transient rich progress bar; yields a function that advances it by one. None where the output is
    not a terminal: a finished transient bar leaves an empty line in a log file."""
    from rich.console import Console

    console = Console()
    if not enabled or not (console.is_terminal or console.is_jupyter):
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _seed(*parts: int) -> int:
    return int(np.random.default_rng(list(parts)).integers(0, 2**31 - 1))


def rollout_metrics(trajectories: list[Trajectory]) -> dict[str, float]:
    """Success rate, mean return, invalid-action rate, turns and response length of a batch."""
    if not trajectories:
        return {"success": 0.0, "reward": 0.0, "invalid_rate": 0.0, "turns": 0.0, "errors": 0.0}
    actions = [s for t in trajectories for s in t.steps if s.kind == "action"]
    return {
        "success": float(np.mean([t.success for t in trajectories])),
        "reward": float(np.mean([t.reward for t in trajectories])),
        "invalid_rate": float(np.mean([not s.valid for s in actions])) if actions else 0.0,
        "turns": float(np.mean([t.num_turns for t in trajectories])),
        "response_tokens": float(np.mean([len(s.response_ids or []) for s in actions])) if actions else 0.0,
        "errors": float(sum(t.error is not None for t in trajectories)),
    }


# ---- credit ---------------------------------------------------------------------------------------

def credit_rows(trajectories: list[Trajectory], credit: Any,
                tasks: list[Task] | None = None) -> tuple[dict[Row, float], dict[Row, bool]]:
    """Advantages and loss masks of ``agentgym.credit.compute``, keyed by ``(trajectory, step)``."""
    from agentgym.credit import compute

    result = compute(trajectories, credit, tasks=tasks)
    rows = list(zip(result.traj_index.tolist(), result.step_index.tolist()))
    return dict(zip(rows, result.advantages.tolist())), dict(zip(rows, result.loss_mask.tolist()))
