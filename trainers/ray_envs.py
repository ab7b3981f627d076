"""Environments in Ray actors: the rollout engine on one machine, its environments on many.

A :class:`RayEnvPool` starts ``hosts`` Ray actors (spread over the cluster's nodes) that each hold
many environments, one per episode. ``pool.envs(env_id)`` is a zero-argument environment factory
for :class:`~agentgym.rollout.RolloutRunner`, so the runner, its policy and its batching stay where
they are (the driver, next to the GPU) and only ``reset``, ``step`` and the scripted policies'
hooks cross the network::

    with RayEnvPool(hosts=8, address="auto") as pool:
        runner = RolloutRunner(policy, env=pool.envs("webshop-v0"), concurrency=256)
        result = runner.run_sync(tasks)

Trajectories are the same as in-process ones (same observations, rewards, state keys; the random
policy's generator state travels with each call). Each call costs a round trip (about 1 ms on one
machine), so this pays off for environments whose steps are slow or heavy (a browser, a sandbox,
a database), not for household-v0's 40 µs steps. Every node needs agentgym installed.

Failures stay per episode: an environment error is raised in the driver as the same exception
type and message (one Ray cannot pickle arrives as :class:`RemoteHostError` with its last line); a
host that dies fails the episodes it held (``Trajectory.error`` names the host) and the pool
starts a replacement for later episodes. A step time limit cancels the remote call as well as the
wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import math
import os
import pickle
import random
import re
import socket
from typing import Any

from agentgym.env import Environment
from agentgym.errors import AgentGymError, ConfigError, EnvironmentClosedError
from agentgym.types import StepResult, Task, ToolCall, ToolSpec


_START_TIMEOUT = 120.0  # seconds for a host actor to start (a cluster may have to make room)


class RemoteHostError(AgentGymError, RuntimeError):
    """The Ray actor holding an environment died or cannot be reached."""


class _Raised:
    """What an environment's ``current_agent()`` raised on the host, kept for the driver to raise."""

    def __init__(self, error: BaseException) -> None:
        try:
            pickle.loads(pickle.dumps(error))  # both ways: an error with its own __init__ may not rebuild
        except Exception:  # noqa: BLE001 - whatever cannot travel travels as its text
            error = RemoteHostError(f"{type(error).__name__}: {error}")
        self.error = error


def _next_agent(env: Environment, over: bool) -> "str | _Raised":
    """The role that acts next, or what asking raised; ``"agent"`` after the last turn or without roles."""
    if over or not env.agents:
        return "agent"
    try:
        return env.current_agent()
    except Exception as exc:  # noqa: BLE001 - the runner reports it when it asks
        return _Raised(exc)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("environments in Ray actors need Ray: pip install 'agentgym[distributed]'") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` or ``ray://host:port`` nothing answers at: Ray itself retries for many minutes."""
    if address in ("auto", "local") or ("://" in address and not address.startswith("ray://")):
        return  # found by Ray itself, or a scheme of a Ray plugin
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: expected 'auto', 'host:port' or 'ray://host:port'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                          "`ray start --head` or fix the address") from None


class _EnvHost:
    """A Ray actor's state: the environments of the episodes placed on it, by episode id.

    Async: one actor serves all its episodes concurrently on its own event loop, as the runner does.
    """

    def __init__(self) -> None:
        self._envs: dict[int, Environment] = {}

    async def where(self) -> tuple[str, int]:
        """This actor's node address and process id."""
        import ray

        return ray.util.get_node_ip_address(), os.getpid()

    async def reset(self, episode: int, recipe: "_Recipe | None", task: Task) -> tuple[Any, ...]:
        """Start an episode; ``recipe`` (first reset, or another environment) builds its environment first."""
        if recipe is not None:
            await self.close(episode)
            self._envs[episode] = recipe.build()
        env = self._env(episode)
        observation = await env.reset(task)
        return observation, env.tools, env._current_state_key(), dict(env.agents), _next_agent(env, over=False)

    async def step(self, episode: int, action: ToolCall | dict[str, Any] | str) -> tuple[StepResult, bool, str]:
        env = self._env(episode)
        result = await env.step(action)
        over = result.terminated or result.truncated  # asked only before a turn, as in-process
        return result, bool(getattr(env, "success", False)), _next_agent(env, over)

    async def on_text(self, episode: int, text: str) -> ToolCall | None:
        return self._env(episode).on_text(text)

    async def hook(self, episode: int, name: str, rng_state: Any) -> tuple[Any, Any]:
        """Call a scripted policy's hook (``expert_action``, ``random_action``); the generator goes both ways."""
        method = getattr(self._env(episode), name, None)
        if method is None:
            raise AttributeError(f"{type(self._env(episode)).__name__} has no {name}()")
        rng = None
        if rng_state is not None:
            rng = random.Random()
            rng.setstate(rng_state)
        out = method(rng) if rng is not None else method()
        if asyncio.iscoroutine(out):
            out = await out
        return out, (rng.getstate() if rng is not None else None)

    async def close(self, episode: int) -> None:
        env = self._envs.pop(episode, None)
        if env is not None:
            await env.aclose()

    async def close_all(self) -> None:
        """Close every environment still here (a pool closing with episodes unfinished)."""
        envs, self._envs = list(self._envs.values()), {}
        await asyncio.gather(*(env.aclose() for env in envs), return_exceptions=True)

    def _env(self, episode: int) -> Environment:
        env = self._envs.get(episode)
        if env is None:
            raise EnvironmentClosedError(f"episode {episode} has no environment on this host "
                                         "(it was closed, or never reset)")
        return env


class _Host:
    """The driver's handle on one host actor: the actor and how many episodes it holds."""

    def __init__(self, actor: Any, index: int) -> None:
        self.actor, self.index, self.episodes, self.dead = actor, index, 0, False
        self.where: tuple[str, int] | None = None


class RemoteEnvironment:
    """An environment living in a Ray actor, driven from here with the :class:`Environment` calls the
    rollout engine makes (``reset``, ``step``, ``on_text``, ``aclose``, the scripted hooks).

    What the engine reads between calls (``tools``, ``done``, ``success``, the state key, the role
    that acts next) comes back with ``reset`` and ``step``, so a turn is one round trip, plus one for
    a scripted policy's hook or a plain-text answer's ``on_text``.
    """

    def __init__(self, pool: "RayEnvPool", host: _Host, episode: int, env_id: str | None,
                 options: dict[str, Any]) -> None:
        self._pool, self._host, self._episode = pool, host, episode
        self._env_id, self._options = env_id, options
        self._built: str | None = None  # the id of the environment built on the host
        self._tools: list[ToolSpec] = []
        self._state_key: str | None = None
        self.agents: dict[str, str] = {}  # the remote environment's roles (known after reset)
        self._agent = "agent"
        self._closed = False
        self.done = self.success = False
        self.task: Task | None = None

    @property
    def tools(self) -> list[ToolSpec]:
        """The tool specs of the remote environment (known after ``reset``)."""
        return self._tools

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._closed

    @property
    def host(self) -> tuple[str, int] | None:
        """The node address and process id of the actor holding this environment (known after ``reset``)."""
        return self._host.where

    async def reset(self, task: Task) -> str:
        """Start an episode on the host (creating the environment there on first use)."""
        if self._closed:
            raise EnvironmentClosedError("this remote environment is closed; take a new one from the pool")
        if self._host.where is None:  # a replacement host: it may not find room
            try:
                where = await asyncio.wait_for(self._wait(self._host.actor.where.remote()), _START_TIMEOUT)
            except asyncio.TimeoutError:
                raise RemoteHostError(f"environment host {self._host.index} did not restart within "
                                      f"{_START_TIMEOUT:g} s (no room on the cluster?)") from None
            self._host.where = tuple(where)
        recipe = None
        if self._built is None or (self._env_id is None and self._built != task.env):
            recipe = _Recipe(self._env_id or task.env, self._options)
        observation, self._tools, self._state_key, self.agents, self._agent = await self._call("reset", recipe, task)
        self._built = recipe.env_id if recipe is not None else self._built
        self.task, self.done, self.success = task, False, False
        return observation

    async def step(self, action: ToolCall | dict[str, Any] | str) -> StepResult:
        """One action on the host; see :meth:`Environment.step`."""
        result, self.success, self._agent = await self._call("step", action)
        self.done = result.terminated or result.truncated  # as Environment.done: over either way
        self._state_key = result.state_key
        return result

    async def on_text(self, text: str) -> ToolCall | None:  # type: ignore[override]
        """The remote environment's ``on_text`` (awaited by the rollout engine)."""
        return await self._call("on_text", text)

    async def expert_action(self) -> Any:
        """The remote environment's ``expert_action()``."""
        return await self.call_hook("expert_action")

    async def random_action(self, rng: random.Random) -> Any:
        """The remote environment's ``random_action(rng)``, advancing ``rng`` as a local call would."""
        return await self.call_hook("random_action", rng)

    async def call_hook(self, name: str, rng: random.Random | None = None) -> Any:
        """Call the remote environment's method ``name`` (a scripted policy's hook) with no arguments, or
        with ``rng`` when given (its state goes there and back)."""
        action, state = await self._call("hook", name, rng.getstate() if rng is not None else None)
        if rng is not None:
            rng.setstate(state)
        return action

    def state_key(self) -> str | None:
        """The state key the last ``reset`` or ``step`` reported."""
        return self._state_key

    def current_agent(self) -> str:
        """The role that acts next, as the last ``reset`` or ``step`` reported (what the host's
        ``current_agent()`` raised, raised here: the runner asks before the turn, as in-process)."""
        if isinstance(self._agent, _Raised):
            raise self._agent.error
        return self._agent

    _current_state_key = state_key

    async def aclose(self) -> None:
        """Close the remote environment and give its place on the host back."""
        if self._closed:
            return
        self._closed = True
        self._pool._release(self._host)
        if not self._host.dead:
            try:
                await self._call("close")
            except RemoteHostError:
                pass  # the host died: its environments are gone with it

    async def __aenter__(self) -> "RemoteEnvironment":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, *args: Any) -> Any:
        return await self._wait(getattr(self._host.actor, method).remote(self._episode, *args))

    async def _wait(self, ref: Any) -> Any:
        ray = self._pool._ray
        try:
            return await ref
        except asyncio.CancelledError:
            ray.cancel(ref)  # a time limit: stop the remote call too, not only the wait
            raise
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
                with contextlib.suppress(AttributeError, TypeError):  # where it was raised, for the run's record:
                    # Ray's message is the actor's traceback (colored)
                    cause.remote_traceback = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # type: ignore[attr-defined]
                raise cause from None  # the environment's own error, as an in-process call raises it
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]  # e.g. one Ray cannot pickle
            raise RemoteHostError(f"environment host {self._host.index}: {lines[-1] if lines else repr(exc)}") from None
        except ray.exceptions.RayActorError as exc:
            died = isinstance(exc, ray.exceptions.ActorDiedError)
            if died:
                self._pool._lost(self._host)
            where = f" ({self._host.where[0]}, pid {self._host.where[1]})" if self._host.where else ""
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            what = "died" if died else "is unreachable"
            raise RemoteHostError(f"environment host {self._host.index}{where} {what}: {first}") from None


class _Recipe:
    """How the host builds an episode's environment: the registered class (or ``"module:Class"``)
    and its keywords, resolved here, so environments registered only in this process (by a script,
    a test, ``--plugin``) build there too, as long as their class can be pickled or imported."""

    def __init__(self, env_id: str, options: dict[str, Any]) -> None:
        from agentgym.registry import spec

        found = spec(env_id)
        self.env_id, self.entry_point, self.kwargs = env_id, found.entry_point, {**found.defaults, **options}

    def build(self) -> Environment:
        entry = self.entry_point
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = importlib.import_module(module)
            for part in attr.split("."):
                entry = getattr(entry, part)
        env = entry(**self.kwargs)
        if not isinstance(env, Environment):
            raise TypeError(f"{self.env_id!r} made a {type(env).__name__} object, not an agentgym.Environment")
        return env


class RemoteEnvs:
    """A zero-argument environment factory for :class:`~agentgym.rollout.RolloutRunner`: each call
    places a new :class:`RemoteEnvironment` on the pool's least busy host."""

    def __init__(self, pool: "RayEnvPool", env_id: str | None, options: dict[str, Any]) -> None:
        self.pool, self.env_id, self.options = pool, env_id, options

    def __call__(self) -> RemoteEnvironment:
        return self.pool.make(self.env_id, **self.options)

    def __repr__(self) -> str:
        return f"RemoteEnvs({self.env_id or 'each task’s env'!s}, hosts={self.pool.hosts})"


class RayEnvPool:
    """``hosts`` Ray actors that hold environments for a rollout engine on this machine.

    Args:
        hosts: how many actors (environment processes); they are spread over the cluster's nodes.
        address: a running cluster to join (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``);
            None starts a new local Ray. Ignored when this process already has Ray (``ray.init``):
            the pool uses that one, and leaves it running when it closes.
        num_cpus: CPUs each host reserves from Ray's scheduler (fractions allowed).
        runtime_env: Ray's ``runtime_env`` for the hosts (e.g. ``{"pip": [...]}``, ``env_vars``).

    Use it as a context manager, or call :meth:`close`: environments still open are closed, the actors
    killed, and a Ray this pool started is shut down.
    """

    def __init__(self, hosts: int = 2, *, address: str | None = None, num_cpus: float = 1.0,
                 runtime_env: dict[str, Any] | None = None) -> None:
        if not isinstance(hosts, int) or hosts <= 0:
            raise ConfigError(f"hosts must be a positive number of environment actors, got {hosts!r}")
        if num_cpus < 0:
            raise ConfigError(f"num_cpus must not be negative, got {num_cpus}")
        ray = self._ray = _ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls from a training run
        self._started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:  # "local": a new Ray even where RAY_ADDRESS or a `ray start` names a cluster
                address, kwargs["num_cpus"] = "local", max(os.cpu_count() or 1, math.ceil(hosts * num_cpus))
            else:
                _check_reachable(address)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = "a new local instance" if address == "local" else address
                raise ConfigError(f"cannot start or join Ray at {where}: {exc}") from None
            self._started_ray = True
        self.hosts, self.num_cpus, self.runtime_env = hosts, num_cpus, runtime_env
        self._episodes = itertools.count()
        self._closed = False
        self._hosts: list[_Host] = []
        try:
            free, total = ray.available_resources().get("CPU", 0.0), ray.cluster_resources().get("CPU", 0.0)
            if hosts * num_cpus > free + 1e-6:
                raise ConfigError(f"{hosts} hosts of {num_cpus:g} CPUs each need {hosts * num_cpus:g} CPUs; the Ray "
                                  f"cluster has {free:g} free of {total:g}: use fewer hosts or fewer CPUs per host "
                                  "(num_cpus, rollout.ray_cpus_per_host, --ray-cpus-per-host; fractions are allowed)")
            self._actor_class = ray.remote(_EnvHost)
            self._hosts = [self._start(i) for i in range(hosts)]
            try:  # wait for every actor: a cluster without room for them fails here, not mid-rollout
                places = ray.get([h.actor.where.remote() for h in self._hosts], timeout=_START_TIMEOUT)
            except Exception as exc:
                raise ConfigError(f"the {hosts} environment hosts did not start: {type(exc).__name__}: {exc}") from None
        except BaseException:  # Ctrl-C included: leave no actors, nor a Ray this pool started
            self.close(timeout=0)
            raise
        for host, where in zip(self._hosts, places):
            host.where = tuple(where)

    def _start(self, index: int) -> _Host:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "max_concurrency": 10_000,
                                   "scheduling_strategy": "SPREAD"}
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        return _Host(self._actor_class.options(**options).remote(), index)

    def envs(self, env_id: str | None = None, **options: Any) -> RemoteEnvs:
        """A factory for ``RolloutRunner(env=...)``: environments ``env_id`` (default: each task's ``env``)
        made with ``options`` on the hosts."""
        if env_id is not None:
            from agentgym.registry import spec

            spec(env_id)  # an unknown id fails here, naming close matches
        return RemoteEnvs(self, env_id, options)

    def make(self, env_id: str | None = None, **options: Any) -> RemoteEnvironment:
        """One environment on the least busy host; it is created there at its first ``reset``."""
        if self._closed:
            raise EnvironmentClosedError("this RayEnvPool is closed")
        for dead in [h for h in self._hosts if h.dead]:
            self._replace(dead)
        host = min(self._hosts, key=lambda h: (h.episodes, h.index))
        host.episodes += 1
        return RemoteEnvironment(self, host, next(self._episodes), env_id, options)

    def placement(self) -> list[dict[str, Any]]:
        """Each host: its node, process id, episodes placed on it now, and whether it died."""
        return [{"index": h.index, "node": h.where[0] if h.where else None, "pid": h.where[1] if h.where else None,
                 "episodes": h.episodes, "dead": h.dead} for h in self._hosts]

    def close(self, timeout: float = 30.0) -> None:
        """Close the environments still open on the hosts (``timeout`` seconds at most), kill the hosts,
        and shut down a Ray this pool started."""
        if self._closed:
            return
        self._closed = True
        live = [h for h in self._hosts if not h.dead]
        if live and timeout > 0:
            try:
                self._ray.get([h.actor.close_all.remote() for h in live], timeout=timeout)
            except Exception:  # a dead or stuck host: killing it below ends its environments with it
                pass
        for host in self._hosts:
            try:
                self._ray.kill(host.actor)
            except Exception:  # already dead
                pass
        self._close_ray()

    def _close_ray(self) -> None:
        if self._started_ray:
            self._started_ray = False
            self._ray.shutdown()

    def __enter__(self) -> "RayEnvPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RayEnvPool(hosts={self.hosts})"

    # ----- bookkeeping ----------------------------------------------------------------------------
    def _release(self, host: _Host) -> None:
        host.episodes -= 1

    def _lost(self, host: _Host) -> None:
        host.dead = True

    def _replace(self, dead: _Host) -> None:
        """A new actor in a dead host's slot; episodes already on the dead one fail."""
        try:
            self._ray.kill(dead.actor, no_restart=True)  # in case it is only unreachable, not gone
        except Exception:
            pass
        self._hosts[self._hosts.index(dead)] = self._start(dead.index)
