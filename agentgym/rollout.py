"""The async rollout engine: many episodes at once on one event loop.

:class:`RolloutRunner` plays ``n`` samples of every task (one group per task, sharing a
``group_id``) with at most ``concurrency`` episodes alive at a time. Each turn of each episode:

    env.state_key() ─► context.messages() ─► policy (batched across episodes) ─► parse ─► env.step
                                                                                            │
    Step (token ids, logprobs, messages, action or parse error, StepResult, timings) ◄──────┘

Concurrent episodes' generation requests are coalesced into one ``Policy.generate`` call (until
the batch is full or ``batch_wait`` seconds pass). Scripted policies (:class:`EnvPolicy`) get the
episode's environment instead of a prompt.

Error isolation: an environment that raises, or takes longer than ``step_timeout`` for one call
or ``episode_timeout`` for the episode, ends that episode with ``error`` set and ``truncated``;
a policy failure is retried ``policy_retries`` times with backoff and then recorded the same way.
The other episodes go on and the steps collected so far are kept; a failure records where the
environment raised (``metadata["error_at"]``, ``metadata["traceback"]``). (A step that blocks the
event loop without awaiting cannot be interrupted in-process; it ends its episode with an error once
it returns, when it took longer than ``step_timeout``. Such environments must run their blocking
work in a thread or subprocess, as docs/DESIGN.md asks.)

Limits: an episode stops at ``min(task.max_turns, H)`` agent turns, where ``H`` is ``max_turns``,
or ``max_turns(step)`` when it is a schedule over training steps (:func:`horizon_schedule`,
ScalingInter-RL, docs/ALGORITHMS.md §6). A summarizing context (:class:`agentgym.context.Summarize`)
adds summary steps and may end an episode as ``overlong``.

Multi-agent environments (``Environment.agents``): each role has a context of its own, the
observation after a step goes to the role ``current_agent()`` names next, and ``Step.agent`` records
who acted. The environment may live in another process (``agentgym.trainers.ray_envs``): its
``on_text`` and scripted hooks are then awaited under the step limit.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import random
import re
import sysconfig
import time
import traceback
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from agentgym.context import ContextManager, Summarize, context_factory, estimate_tokens
from agentgym.env import Environment, first_observation
from agentgym.errors import ConfigError
from agentgym.parsing import format_tool_call, parse_action
from agentgym.policies._batching import Batcher
from agentgym.policies.base import Completion, EnvPolicy, Policy, SamplingParams, context_overflow
from agentgym.registry import make, spec
from agentgym.store import RunStore
from agentgym.types import Message, Step, StepResult, Task, ToolCall, ToolSpec, Trajectory, unchecked

T = TypeVar("T")
_NO_CALL = "no tool call found in the response"

DEFAULT_SYSTEM_PROMPT = (
    "You are an agent acting in an environment through tools. Each turn, read the latest observation "
    "and reply with exactly one tool call and nothing else."
)


class _EpisodeFailure(Exception):
    """Ends one episode with ``Trajectory.error`` set to the message."""


def _raised(what: str, exc: BaseException) -> _EpisodeFailure:
    """The failure of an episode whose environment ``what`` raised ``exc``."""
    return _EpisodeFailure(f"environment {what} raised {type(exc).__name__}: {exc}")


# the engine's own modules, between the caller and an environment's code: never the place a bug is
_MACHINERY = ("agentgym.rollout", "agentgym.env", "agentgym.trainers.ray_envs")
_REMOTE_FRAME = re.compile(r'^  File "(.+)", line (\d+), in (.+)$', re.MULTILINE)


def _where(exc: BaseException) -> str | None:
    """``file.py, line N, in fn``: the innermost frame of ``exc`` in the environment's own code (outside the
    engine, and outside the standard library and installed packages when it has a frame of its own), or None.
    An error from an environment in a Ray actor is placed by its remote traceback."""
    remote = getattr(exc, "remote_traceback", None)
    if isinstance(remote, str):
        frames = [(f, int(n), fn) for f, n, fn in _REMOTE_FRAME.findall(remote)
                  if not f.replace("\\", "/").endswith(("agentgym/rollout.py", "agentgym/env.py", "trainers/ray_envs.py"))
                  and "/ray/" not in f]
    else:
        frames = [(frame.f_code.co_filename, line, frame.f_code.co_name)
                  for frame, line in traceback.walk_tb(exc.__traceback__)
                  if frame.f_globals.get("__name__") not in _MACHINERY]
    installed = tuple({sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")} - {None})
    own = [f for f in frames if not os.path.abspath(f[0]).startswith(installed)] or frames
    if not own:
        return None
    filename, line, function = own[-1]
    return f"{os.path.basename(filename)}, line {line}, in {function}"


class _ContextFull(Exception):
    """Ends one episode as overlong: its next prompt would not fit the model's context."""


class _Deadline:
    """The time limits of the running task (one episode): when one passes, the task is cancelled.

    Like ``asyncio.timeout`` (3.11+ only), with two limits: the episode's ``end``, and a step limit
    of ``step_timeout`` seconds armed around each environment call (:meth:`begin`, :meth:`finish`).
    One timer serves both. It stays armed at the earliest time a limit could pass and re-arms
    itself when it fires early, so the fast steps of an episode schedule one timer between them,
    not one each. ``reason`` names the limit that passed.
    """

    def __init__(self, end: float | None, reason: str, step_timeout: float | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._handle: asyncio.TimerHandle | None = None
        self._armed = math.inf  # when the timer fires
        self._base = self._task.cancelling() if hasattr(self._task, "cancelling") else 0
        self.end, self.end_reason, self.step_timeout = end, reason, step_timeout
        self.when, self.reason, self.expired = end, reason, False
        if end is not None:
            self._arm(end)

    def begin(self, reason: str) -> None:
        """An environment call starts: arm the step limit, named ``reason``, unless the episode ends first."""
        if self.step_timeout is None or self.expired:
            return
        when = self._loop.time() + self.step_timeout
        if self.end is not None and when >= self.end:
            return
        self.when, self.reason = when, reason
        if when < self._armed:
            self._arm(when)

    def finish(self) -> None:
        """The environment call returned: only the episode's limit is left."""
        if not self.expired:
            self.when, self.reason = self.end, self.end_reason

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._armed = self._loop.call_at(when, self._fire), when

    def _fire(self) -> None:
        self._handle, self._armed = None, math.inf
        if self.when is None:
            return
        if self._loop.time() < self.when:  # the limit moved later since this timer was set
            self._arm(self.when)
            return
        self.expired = True
        assert self._task is not None
        self._task.cancel()

    def end_episode(self) -> None:
        """The episode is over: its limit no longer applies (the step limit still does, for closing)."""
        self.end = None
        self.finish()

    def close(self) -> None:
        """Disarm for good."""
        self.when = self.end = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def check(self) -> None:
        """After a call returned normally: if a limit passed, the call swallowed our cancellation; re-raise it."""
        if self.expired:
            raise asyncio.CancelledError

    def absorb(self) -> bool:
        """Undo our cancellation; False when someone else cancelled the task too (re-raise then)."""
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        return uncancel is None or uncancel() <= self._base


def horizon_schedule(rounds: Sequence[int] | int, steps_per_stage: int) -> Callable[[int], int]:
    """ScalingInter-RL's turn limit for training step ``k``: ``rounds[min((k-1)//K, M-1)]`` (docs/ALGORITHMS.md §6)."""
    def schedule(step: int) -> int:
        from agentgym.credit import horizon

        return horizon(step, rounds, steps_per_stage)

    return schedule


@dataclass
class RolloutResult:
    """The trajectories of one :meth:`RolloutRunner.run`, in task order (samples of a task together)."""

    trajectories: list[Trajectory]
    elapsed: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)

    def __repr__(self) -> str:  # cheap: asyncio.run formats the main task's result when it restores SIGINT
        return f"RolloutResult({len(self.trajectories)} trajectories, {self.elapsed:.2f} s)"

    def summary(self) -> dict[str, Any]:
        """Success rate, mean turns, invalid-action rate, failures and throughput."""
        return {**summarize(self.trajectories), "elapsed_s": round(self.elapsed, 3),
                "episodes_per_s": round(len(self.trajectories) / self.elapsed, 3) if self.elapsed else None,
                "mean_batch_size": (round(sum(self.batch_sizes) / len(self.batch_sizes), 2)
                                    if self.batch_sizes else None)}


def summarize(trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """Aggregate figures of a set of trajectories.

    ``failures`` counts episodes that ended with a system error, by error message; failed episodes
    still count in the other figures (as unsuccessful). ``failed_at`` gives, for each message, where the
    first such episode's error was raised (``metadata["error_at"]``), where that is known.
    ``store_errors`` counts the trajectories the run store could not write, by error (each has
    ``metadata["store_error"]``; it is still returned).
    """
    n = len(trajectories)
    actions = [s for t in trajectories for s in t.steps if s.kind == "action"]
    failures = Counter(t.error for t in trajectories if t.error)
    return {
        "episodes": n,
        "success_rate": sum(t.success for t in trajectories) / n if n else 0.0,
        "mean_reward": sum(t.reward for t in trajectories) / n if n else 0.0,
        "mean_turns": len(actions) / n if n else 0.0,
        "invalid_action_rate": sum(not s.valid for s in actions) / len(actions) if actions else 0.0,
        "overlong": sum(t.overlong for t in trajectories),
        "failed": sum(failures.values()),
        "failures": dict(failures.most_common()),
        "failed_at": {t.error: where for t in reversed(trajectories)  # reversed: the first one's stays
                      if t.error and (where := t.metadata.get("error_at"))},
        "store_errors": dict(Counter(t.metadata["store_error"] for t in trajectories if "store_error" in t.metadata)),
    }


class RolloutRunner:
    """Runs episodes of tasks with a policy; see the module docstring for the loop and its guarantees.

    Args:
        policy: a :class:`Policy`, an :class:`EnvPolicy`, or a policy name for
            :func:`agentgym.policies.load_policy` (the runner then owns it and closes it in :meth:`aclose`).
        env: a registry id or a zero-argument factory of environments; default: each task's ``env``.
        n: samples per task (one group).
        concurrency: most episodes alive at once.
        max_turns: agent-turn limit, an int or a function of the training step (:func:`horizon_schedule`);
            the task's own ``max_turns`` applies too.
        step_timeout: seconds for one environment call (reset, step, close); None for no limit.
        episode_timeout: seconds for a whole episode; None for no limit.
        context: a context spec (``full``, ``window:K``, ``summary:LIMIT[:S]``) or a factory of
            :class:`~agentgym.context.ContextManager`.
        sampling: sampling parameters of every action.
        system_prompt: the system message of every episode (None for none).
        tool_schema: show the environment's tool specs to the model. Off for environments that
            take plain-text actions (``on_text``), where the schema only lengthens every prompt.
        policy_retries: extra attempts after a failed generation before the episode fails.
        batch_size: most conversations per policy call (default: the policy's ``max_batch_size``, else 8).
        batch_wait: seconds to wait for a batch to fill.
        store: a run directory (or :class:`RunStore`) that trajectories stream into as they finish,
            as ``trajectories/<store_name>.jsonl``.
        record_messages: keep each step's prompt messages (``Step.messages``) and, for a model policy,
            the tool specs the chat template rendered beside them (``metadata["tools"]``, OpenAI format).
        seed: base of the per-episode seeds (recorded in ``Trajectory.seed``). A policy whose
            ``generate`` takes ``seeds`` also gets one seed per generation, derived from the
            episode seed and the step index, so a run with the same seed samples the same tokens
            whatever the batching.
        env_options: keyword arguments for :func:`agentgym.make`.
    """

    def __init__(self, policy: Policy | EnvPolicy | str, env: str | Callable[[], Environment] | None = None, *,
                 n: int = 1, concurrency: int = 64, max_turns: int | Callable[[int], int] | None = None,
                 step_timeout: float | None = 60.0, episode_timeout: float | None = None,
                 context: str | Callable[[], ContextManager] = "full", sampling: SamplingParams | None = None,
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, tool_schema: bool = True, policy_retries: int = 2,
                 retry_backoff: float = 0.5, batch_size: int | None = None, batch_wait: float = 0.005,
                 store: RunStore | str | Path | None = None, store_name: str = "rollout",
                 record_messages: bool = True, seed: int = 0, env_options: dict[str, Any] | None = None) -> None:
        if n <= 0:
            raise ConfigError(f"n (samples per task) must be positive, got {n}")
        if concurrency <= 0:
            raise ConfigError(f"concurrency must be positive, got {concurrency}")
        if isinstance(max_turns, int) and max_turns <= 0:
            raise ConfigError(f"max_turns must be positive, got {max_turns}")
        for name, value in (("step_timeout", step_timeout), ("episode_timeout", episode_timeout)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive or None, got {value}")
        if isinstance(env, str):
            spec(env)  # an unknown id fails here, naming the close matches, not once per episode
        self._owns_policy = isinstance(policy, str)
        if isinstance(policy, str):
            from agentgym.policies import load_policy

            policy = load_policy(policy)
        self.policy = policy
        self.scripted = isinstance(policy, EnvPolicy) and not isinstance(policy, Policy)
        if not self.scripted and not isinstance(policy, Policy):
            raise ConfigError(f"{policy!r} is neither a Policy (generate) nor an EnvPolicy (act)")
        self.env = env
        # the registry id episodes run: env, a factory's env_id (a RayEnvPool's), or None for each task's env
        self._env_id: str | None = env if isinstance(env, str) or env is None else getattr(env, "env_id", None)
        self.env_options = env_options or {}
        self.n, self.concurrency, self.max_turns = n, concurrency, max_turns
        self.step_timeout, self.episode_timeout = step_timeout, episode_timeout
        self.context = context_factory(context)
        if self.scripted and isinstance(self.context(), Summarize):
            raise ConfigError("summarization needs a model policy; scripted policies cannot write summaries")
        self.sampling = sampling or SamplingParams()
        self.system_prompt = system_prompt
        self.tool_schema = tool_schema
        self.policy_retries, self.retry_backoff = policy_retries, retry_backoff
        self.batch_size = batch_size or getattr(policy, "max_batch_size", 8)
        self.batch_wait = batch_wait
        self.store = RunStore(store) if isinstance(store, (str, Path)) else store
        self.store_name = store_name
        self.record_messages = record_messages
        self.seed = seed
        self._seeded = not self.scripted and _takes_seeds(policy)
        self._context_length: int | None = (getattr(policy, "context_length", None)
                                            if hasattr(policy, "count_tokens") else None)
        self._batcher: Batcher[tuple[list[Message], int], Completion] | None = None
        self._batch_args: dict[Any, tuple[list[ToolSpec] | None, SamplingParams]] = {}
        self._tools_keys: dict[tuple[int, ...], tuple[list[ToolSpec], str, list[dict[str, Any]]]] = {}
        self._timeout_reasons = {what: f"environment {what} timed out after {step_timeout:g} s" if step_timeout else ""
                                 for what in ("reset", "step")}
        self._timeout_reasons["on_text"] = self._timeout_reasons["step"]  # a remote on_text is part of its step

    # ----- public API ----------------------------------------------------------------------------
    async def run(self, tasks: Sequence[Task], *, step: int | None = None,
                  on_trajectory: Callable[[Trajectory], None] | None = None) -> RolloutResult:
        """Play ``n`` samples of each task and return every trajectory, failed ones included.

        ``step`` is the training step (1-indexed) a ``max_turns`` schedule is evaluated at.
        ``on_trajectory`` is called with each trajectory as it finishes (after it is stored).
        """
        if self._batcher is not None:
            raise RuntimeError("this RolloutRunner is already running; use one runner per concurrent run")
        tasks = self.check(tasks)
        horizon = self._horizon(step)
        run_id = uuid.uuid4().hex[:8]
        # a task listed twice makes two groups
        repeat: Counter[str] = Counter()
        jobs = []
        for ti, task in enumerate(tasks):
            repeat[task.id] += 1
            jobs += [(task, f"{run_id}-{ti}-{task.id}", i, repeat[task.id] - 1) for i in range(self.n)]
        results: list[Trajectory | None] = [None] * len(jobs)
        self._batcher = Batcher(self._generate_batch, max_batch=self.batch_size, max_wait=self.batch_wait,
                                max_inflight=getattr(self.policy, "max_inflight_batches", 1))
        write_lock = asyncio.Lock()
        next_job = iter(range(len(jobs)))
        started = time.perf_counter()

        async def worker() -> None:
            for index in next_job:
                task, group_id, sample, repeat_index = jobs[index]
                traj = await self._episode(task, sample, group_id, horizon, repeat_index)
                results[index] = traj
                if self.store is not None:
                    try:
                        async with write_lock:
                            await asyncio.to_thread(self.store.append_trajectory, traj, self.store_name)
                    except Exception as exc:  # one unsavable trajectory must not end the run; it is reported
                        traj.metadata["store_error"] = f"{type(exc).__name__}: {exc}"
                if on_trajectory is not None:
                    on_trajectory(traj)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(jobs)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:  # a failing callback or store, or a cancelled run: stop every worker
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            batch_sizes = list(self._batcher.batch_sizes)
            await self._batcher.aclose()
            self._batcher = None
        trajectories = [t for t in results if t is not None]
        return RolloutResult(trajectories, time.perf_counter() - started, batch_sizes)

    def check(self, tasks: Sequence[Task]) -> list[Task]:
        """Fail before anything runs, not once per episode: ``tasks`` must be :class:`Task` objects of
        registered environments that the policy can play (a scripted policy needs the environment's
        ``expert_action`` or ``random_action``). Returns the tasks as a list."""
        task_list = None if isinstance(tasks, (str, Task)) else list(tasks)  # a generator is read once, here
        if task_list is None or not all(isinstance(t, Task) for t in task_list):
            raise TypeError("tasks must be a list of Task, e.g. agentgym.load_tasks('household-v0', 'test-unseen') "
                            f"or [task]; got {type(tasks).__name__}")
        hook = getattr(self.policy, "hook", None) if self.scripted else None
        env = self._env_id
        if callable(self.env) and not hasattr(self.env, "env_id"):
            env_ids: set[str] = set()  # a factory of its own environments: tasks may name any id
        else:
            env_ids = {t.env for t in task_list} if env is None else {env}
        summarizing = isinstance(self.context(), Summarize)
        for env_id in env_ids:
            env_spec = spec(env_id)  # an unknown id fails here, once
            if summarizing and len(getattr(env_spec.load(), "agents", ())) > 1:
                raise ConfigError(f"{env_id} has several agents, each with a conversation of its own; summarization "
                                  "works on one conversation: use context full or window:K")
            if hook and not callable(getattr(env_spec.load(), hook, None)):
                raise ConfigError(f"the {getattr(self.policy, 'name', hook)} policy needs "
                                  f"{env_spec.load().__name__}.{hook}(), which {env_id} does not define")
        return task_list

    def run_sync(self, tasks: Sequence[Task], **kwargs: Any) -> RolloutResult:
        """:meth:`run` from synchronous code (starts its own event loop)."""
        return asyncio.run(self.run(tasks, **kwargs))

    async def aclose(self) -> None:
        """Close the policy if the runner loaded it from a name."""
        if self._owns_policy:
            await self.policy.aclose()

    async def __aenter__(self) -> "RolloutRunner":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- one episode -----------------------------------------------------------------------------
    def _horizon(self, step: int | None) -> int | None:
        if self.max_turns is None or isinstance(self.max_turns, int):
            return self.max_turns
        if step is None:
            raise ConfigError("max_turns is a schedule over training steps: pass run(tasks, step=k)")
        horizon = int(self.max_turns(step))
        if horizon <= 0:
            raise ConfigError(f"the max_turns schedule gave {horizon} turns at step {step}; it must be positive")
        return horizon

    def _episode_seed(self, task: Task, sample: int, repeat_index: int = 0) -> int:
        """Seeds differ across samples and across repeats of a task in one run (a task listed twice)."""
        task_key = task.id if not repeat_index else f"{task.id}#{repeat_index}"  # the first keeps its old seed
        return zlib.crc32(f"{self.seed}:{task_key}:{sample}".encode())

    async def _episode(self, task: Task, sample: int, group_id: str, horizon: int | None,
                       repeat_index: int = 0) -> Trajectory:
        seed = self._episode_seed(task, sample, repeat_index)
        traj = unchecked(Trajectory, {  # all strings and ints already
            "id": f"{group_id}-{sample}", "group_id": group_id, "task_id": task.id,
            "env": self._env_id or task.env, "seed": seed,
            "metadata": {"sample": sample, "policy": getattr(self.policy, "name", type(self.policy).__name__)}})
        env: Environment | None = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        end = None if self.episode_timeout is None else started + self.episode_timeout
        deadline = _Deadline(end, f"episode timed out after {self.episode_timeout:g} s" if end else "",
                             self.step_timeout)
        try:
            try:
                env = self._make_env(task)
                await self._play(env, task, traj, seed, horizon, deadline)
            finally:
                deadline.end_episode()
        except asyncio.CancelledError:
            if not deadline.expired or not deadline.absorb():
                raise
            traj.error, traj.truncated = deadline.reason, True
        except _EpisodeFailure as exc:
            traj.error, traj.truncated = str(exc), True
            if exc.__cause__ is not None:  # where, and the whole story, for the author of the environment
                _record_traceback(traj, exc.__cause__)
        except _ContextFull as exc:  # not a system failure: the episode ran out of context, like SUPO's overlong
            traj.overlong = traj.truncated = True
            traj.metadata["context_full"] = str(exc)
        except Exception as exc:  # a bug outside the environment: isolate it all the same
            traj.error, traj.truncated = f"{type(exc).__name__}: {exc}", True
            _record_traceback(traj, exc)
        finally:
            if env is not None:
                await self._close_env(env, traj, deadline)
            else:
                deadline.close()
        traj.reward = sum(s.reward for s in traj.steps)
        traj.metadata["elapsed_s"] = round(loop.time() - started, 4)
        return traj

    def _make_env(self, task: Task) -> Environment:
        try:
            if callable(self.env):
                return self.env()
            return make(self.env or task.env, **self.env_options)
        except Exception as exc:
            raise _EpisodeFailure(f"cannot create environment {self.env or task.env!r}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    async def _close_env(self, env: Environment, traj: Trajectory, deadline: _Deadline) -> None:
        """Close the environment under the step limit, reusing the episode's timer unless it fired."""
        if deadline.expired:
            deadline.close()
            deadline = _Deadline(None, "", self.step_timeout)
        deadline.begin("close")
        try:
            try:
                await env.aclose()
                deadline.check()
            finally:
                deadline.close()
        except asyncio.CancelledError:
            if not deadline.expired or not deadline.absorb():
                raise
            traj.metadata["close_error"] = f"aclose() timed out after {self.step_timeout:g} s"
        except Exception as exc:
            traj.metadata["close_error"] = f"{type(exc).__name__}: {exc}"

    async def _env_call(self, awaitable: Awaitable[T], what: str, deadline: _Deadline) -> T:
        """Await an environment call under the step limit; its errors end the episode."""
        deadline.begin(self._timeout_reasons[what])
        try:
            value = await awaitable
        except Exception as exc:
            raise _raised(what, exc) from exc
        finally:
            deadline.finish()
        deadline.check()
        return value

    def _env_sync(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except Exception as exc:
            raise _raised(what, exc) from exc

    async def _play(self, env: Environment, task: Task, traj: Trajectory, seed: int, horizon: int | None,
                    deadline: _Deadline) -> None:
        observation = await self._env_call(env.reset(task), "reset", deadline)
        tool_names = [t.name for t in env.tools]
        tools = env.tools if self.tool_schema else []  # what the model is shown
        tools_key = ""
        if not self.scripted:
            tools_key, shown = self._tools_key(tools)
            if shown and self.record_messages:  # the chat template renders them into the prompt, not the messages
                traj.metadata["tools"] = shown
        keep_context = self.record_messages or not self.scripted  # a scripted policy reads no prompt
        counter = estimate_tokens if self.scripted else self._token_counter(tools)
        context = self.context()
        # several agents: one conversation per role, in `contexts`; one declared role: only its name and instruction
        declared = getattr(env, "agents", None) or {}  # duck-typed environments may not have it
        roles = declared if len(declared) > 1 else None
        agent, contexts, last_said = next(iter(declared), "agent"), {}, {}
        if roles and isinstance(context, Summarize):
            raise _EpisodeFailure("summarization works on one conversation; this environment has several agents")
        if keep_context and not roles:
            context.reset(self._initial_messages(task, observation, declared.get(agent)), counter)
        rng = random.Random(seed) if self.scripted and getattr(self.policy, "uses_rng", True) else None
        remote = hasattr(env, "call_hook")  # in another process: a scripted hook and on_text take a round trip
        limit = task.max_turns if horizon is None else min(task.max_turns, horizon)
        result: StepResult | None = None
        step_limit = self._timeout_reasons["step"]
        for turn in range(limit):
            t0 = time.perf_counter()
            # the state the agent acts from: what the last step reported, or the env itself after reset
            state_key = result.state_key if result is not None else self._env_sync("state_key", env._current_state_key)
            if roles:
                agent = self._env_sync("current_agent", env.current_agent)
                if agent not in roles:
                    raise _EpisodeFailure(f"current_agent() returned {agent!r}, which is not one of the environment's "
                                          f"agents ({', '.join(roles)})")
                if keep_context:  # the latest observation goes to this role's conversation alone
                    seen = observation if result is None else result.observation
                    context = contexts.get(agent)
                    if context is None:  # the task's prompt goes with the first observation only
                        context = contexts[agent] = self.context()
                        context.reset(self._initial_messages(task if result is None else None, seen, roles[agent]),
                                      counter)
                    elif context.add_turn(last_said.pop(agent), _message("user", seen)) != "continue":
                        traj.overlong = traj.truncated = True  # a custom context that cannot take more
                        break
            prompt = context.messages() if keep_context else None
            completion = None
            if self.scripted:
                if remote:
                    deadline.begin(step_limit)
                try:
                    action = await self.policy.act(env, rng)  # type: ignore[union-attr]
                except Exception as exc:
                    raise _EpisodeFailure(f"scripted policy failed: {type(exc).__name__}: {exc}") from exc
                finally:
                    if remote:
                        deadline.finish()
                if remote:
                    deadline.check()
                if isinstance(action, ToolCall):
                    response, call, parse_error = format_tool_call(action), action, None
                else:
                    response = action
                    call, parse_error = self._parse(env, response, tool_names)
            else:
                completion = await self._generate(prompt, tools, tools_key, self.sampling, _turn_seed(traj))
                response = completion.text
                call, parse_error = self._parse(env, response, tool_names)
            if call is not None and type(call) is not ToolCall and inspect.isawaitable(call):
                call, parse_error = await self._await_call(call, deadline)
            t1 = time.perf_counter()
            deadline.begin(step_limit)  # _env_call, inlined: this is the hot loop
            try:
                result = await env.step(call or response)
            except Exception as exc:
                traj.metadata["failed_response"] = response  # the action the episode died on, for debugging
                raise _raised("step", exc) from exc
            except asyncio.CancelledError:
                if deadline.expired:  # our time limit, not a cancelled run
                    traj.metadata["failed_response"] = response
                raise
            finally:
                deadline.finish()
            if deadline.expired:  # the step swallowed our cancellation
                traj.metadata["failed_response"] = response
                raise asyncio.CancelledError
            t2 = time.perf_counter()
            record = {"index": len(traj.steps), "agent": agent, "kind": "action", "segment": context.segment,
                      "state_key": state_key,
                      "messages": prompt if self.record_messages else None, "response": response,
                      "action": call, "parse_error": parse_error, "result": result,
                      "timings": {"policy_s": t1 - t0, "env_s": t2 - t1}}
            if completion is not None:
                traj.steps.append(Step(**record, prompt_ids=completion.prompt_ids or None,
                                       response_ids=completion.token_ids or None,
                                       logprobs=completion.logprobs or None))
            elif type(result) is StepResult and (state_key is None or type(state_key) is str):
                traj.steps.append(unchecked(Step, record))  # scripted: every value is already typed
            else:
                traj.steps.append(Step(**record))
            if self.step_timeout is not None and t2 - t1 > self.step_timeout:  # kept, but the limit passed
                raise _EpisodeFailure(f"environment step took {t2 - t1:.1f} s, over the {self.step_timeout:g} s step "
                                      "limit, without awaiting (a blocking call in a tool?), so the limit could not "
                                      "stop it; await blocking work with asyncio.to_thread")
            if result.terminated or result.truncated:
                traj.terminated, traj.truncated = result.terminated, result.truncated
                break
            if turn + 1 >= limit:
                traj.truncated = True  # the turn limit cut the episode
                break
            if not keep_context:
                continue
            if roles:  # said in this role's conversation when it acts again, before what it then sees
                last_said[agent] = _message("assistant", response)
                continue
            verdict = context.add_turn(_message("assistant", response), _message("user", result.observation))
            if verdict != "continue":
                traj.metadata.setdefault("discarded_steps", []).append(traj.steps[-1].index)
            if verdict == "overlong":
                traj.overlong = traj.truncated = True
                break
            if verdict == "summarize":
                await self._summarize(context, traj, tools, tools_key)
        traj.success = bool(getattr(env, "success", False))

    def _parse(self, env: Environment, response: str, tool_names: list[str]) -> tuple[Any, str | None]:
        """The tool call a response makes (also through the environment's ``on_text``) or why there is none.
        The call is an awaitable when ``on_text`` is a coroutine (an environment in another process)."""
        parsed = parse_action(response, tool_names)
        if parsed.error:
            return None, parsed.error
        if parsed.call is not None:
            return parsed.call, None
        call = self._env_sync("on_text", env.on_text, parsed.text)
        return (call, None) if call is not None else (None, _NO_CALL)

    async def _await_call(self, pending: Awaitable[ToolCall | None],
                          deadline: _Deadline) -> tuple[ToolCall | None, str | None]:
        """An ``on_text`` in another process, under the step limit."""
        call = await self._env_call(pending, "on_text", deadline)
        return (call, None) if call is not None else (None, _NO_CALL)

    async def _summarize(self, context: ContextManager, traj: Trajectory, tools: list[ToolSpec],
                         tools_key: str) -> None:
        t0 = time.perf_counter()
        prompt = context.summary_prompt()
        tokens = getattr(context, "summary_tokens", None)
        params = replace(self.sampling, max_new_tokens=tokens) if tokens else self.sampling
        completion = await self._generate(prompt, tools, tools_key, params, _turn_seed(traj))
        traj.steps.append(Step(
            index=len(traj.steps), kind="summary", segment=context.segment,
            state_key=traj.steps[-1].result.state_key if traj.steps and traj.steps[-1].result else None,
            messages=prompt if self.record_messages else None, response=completion.text,
            prompt_ids=completion.prompt_ids or None, response_ids=completion.token_ids or None,
            logprobs=completion.logprobs or None, timings={"policy_s": time.perf_counter() - t0}))
        context.add_summary(completion.text)

    def _tools_key(self, tools: list[ToolSpec]) -> tuple[str, list[dict[str, Any]]]:
        """A batching key for a tool list and the list in the OpenAI format, made once per distinct list of
        spec objects."""
        ids = tuple(map(id, tools))
        hit = self._tools_keys.get(ids)
        if hit is None:
            if len(self._tools_keys) > 256:
                self._tools_keys.clear()
            # the cache holds the specs, so their ids cannot be reused while the entry lives
            shown = [t.to_openai() for t in tools]
            hit = self._tools_keys[ids] = (tools, json.dumps(shown, sort_keys=True), shown)
        return hit[1], hit[2]

    def _initial_messages(self, task: Task | None, observation: str, role: str | None = None) -> list[Message]:
        """The system prompt (with a role's instruction) and the first observation (after ``task``'s prompt)."""
        messages = [_message("user", observation if task is None else first_observation(task, observation))]
        system = "\n\n".join(part for part in (self.system_prompt, role) if part)
        if system:
            messages.insert(0, _message("system", system))
        return messages

    def _token_counter(self, tools: list[ToolSpec]) -> Callable[[list[Message]], int]:
        count = getattr(self.policy, "count_tokens", None)
        if count is None:
            return estimate_tokens
        return lambda messages: count(messages, tools)

    # ----- generation --------------------------------------------------------------------------------
    async def _generate(self, prompt: list[Message], tools: list[ToolSpec], tools_key: str,
                        params: SamplingParams, seed: int) -> Completion:
        assert self._batcher is not None
        if self._context_length is not None:  # checked alone: in a batch it would fail its batch mates too
            length = self.policy.count_tokens(prompt, tools or None)  # type: ignore[union-attr]
            if length + params.max_new_tokens > self._context_length:
                raise _ContextFull(context_overflow(length, params.max_new_tokens, self._context_length))
        key = (tools_key, params.key())
        self._batch_args.setdefault(key, (tools or None, params))
        last: Exception | None = None
        for attempt in range(self.policy_retries + 1):
            batch_key: tuple = (key, None)
            if attempt:
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
                batch_key = (key, object())  # a retry goes alone: one bad prompt must not fail its batch mates again
            try:
                return await self._batcher.submit(batch_key, (prompt, seed))
            except Exception as exc:
                last = exc
        raise _EpisodeFailure(f"policy failed after {self.policy_retries + 1} attempts: {type(last).__name__}: {last}")

    async def _generate_batch(self, key: Any, items: list[tuple[list[Message], int]]) -> list[Completion]:
        tools, params = self._batch_args[key[0]]
        prompts = [prompt for prompt, _ in items]
        if self._seeded:
            return await self.policy.generate(prompts, tools, params, seeds=[s for _, s in items])  # type: ignore[call-arg, union-attr]
        return await self.policy.generate(prompts, tools, params)  # type: ignore[union-attr]


def _record_traceback(traj: Trajectory, exc: BaseException, limit: int = 8000) -> None:
    """Keep where ``exc`` was raised (``metadata["error_at"]``) and its traceback as Python prints it
    (``metadata["traceback"]``, its last ``limit`` characters); ``Trajectory.error`` stays the same
    wherever the environment ran, so failures group by it."""
    where = _where(exc)
    if where is not None:
        traj.metadata["error_at"] = where
    remote = getattr(exc, "remote_traceback", None)  # an environment in a Ray actor: its own traceback
    text = remote if isinstance(remote, str) else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    traj.metadata["traceback"] = text if len(text) <= limit else "...\n" + text[-limit:]


def _takes_seeds(policy: Any) -> bool:
    """Whether ``policy.generate`` accepts per-conversation ``seeds`` (an optional capability)."""
    try:
        return "seeds" in inspect.signature(policy.generate).parameters
    except (TypeError, ValueError):
        return False


def _turn_seed(traj: Trajectory) -> int:
    """The sampling seed of the episode's next generation: its seed and step index, mixed."""
    return zlib.crc32(f"{traj.seed}:{len(traj.steps)}".encode())


def _message(role: str, content: Any) -> Message:
    """A chat message; text skips validation (the hot loop), anything else is validated."""
    if type(content) is str:
        return unchecked(Message, {"role": role, "content": content})
    return Message(role=role, content=content)  # type: ignore[arg-type]
