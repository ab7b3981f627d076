"""Environments in Ray actors (RayEnvPool): a real local Ray, host actors in their own processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import agentgym as ag
from agentgym.errors import ConfigError, UnknownEnvironmentError
from agentgym.policies.scripted import ScriptedPolicy
from agentgym.rollout import RolloutRunner
from agentgym.types import ToolCall

ray = pytest.importorskip("ray")
from agentgym.trainers.ray_envs import RayEnvPool, RemoteHostError  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hosts cannot import this test module


class Fragile(ag.Environment):
    """Count to 3 with add(1). ``data["fail"]`` breaks turn 2: "raise", "hang" (records its cancellation
    in ``data["log"]``) or "exit" (kills the process holding the environment)."""

    async def reset(self, task: ag.Task) -> str:
        self.value = 0
        return "Count to 3."

    @ag.tool
    async def add(self, n: int) -> str:
        """Add n to the value."""
        fail = self.task.data.get("fail")
        if self.turn == 2 and fail == "raise":
            raise ValueError("broke at turn 2")
        if self.turn == 2 and fail == "hang":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                Path(self.task.data["log"]).write_text(f"cancelled in pid {os.getpid()}")
                raise
        if self.turn == 2 and fail == "exit":
            os._exit(3)
        self.value += n
        if self.value == 3:
            self.finish(1.0)
        return f"The value is {self.value}."

    def state_key(self) -> str:
        return str(self.value)

    async def aclose(self) -> None:
        if getattr(self, "task", None) is not None and self.task.data.get("close_log"):
            Path(self.task.data["close_log"]).write_text(f"closed in pid {os.getpid()}")
        await super().aclose()

    async def expert_action(self) -> ToolCall:
        if self.task.data.get("fail") == "hang_expert":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                Path(self.task.data["log"]).write_text(f"cancelled in pid {os.getpid()}")
                raise
        if self.task.data.get("slow"):
            await asyncio.sleep(self.task.data["slow"])
        return ToolCall(name="add", arguments={"n": 1})

    def cautious_action(self) -> str:
        """A hook of a custom scripted policy: plain text, which on_text turns into a call."""
        return "add 1"

    def on_text(self, text: str) -> ToolCall | None:
        return ToolCall(name="add", arguments={"n": int(text.split()[1])}) if text.startswith("add ") else None


class CautiousPolicy(ScriptedPolicy):
    hook, name, uses_rng = "cautious_action", "cautious", False


@pytest.fixture(scope="module")
def pool():
    ag.register("fragile-test-v0", Fragile)
    with RayEnvPool(hosts=2, num_cpus=0.5) as p:
        yield p


def fragile(task_id: str, **data) -> ag.Task:
    return ag.Task(id=task_id, env="fragile-test-v0", data=data)


def steps_of(result) -> list[list[tuple]]:
    return [[(s.response, s.action, s.parse_error, s.result.observation, s.result.reward, s.result.milestones,
              s.state_key) for s in t.steps] for t in result.trajectories]


@pytest.mark.parametrize("policy", ["expert", "random"])
def test_remote_trajectories_equal_in_process_ones(pool, policy):
    tasks = ag.load_tasks("household-v0", "test-unseen")[:4]
    remote = RolloutRunner(policy, env=pool.envs(), n=2, concurrency=8, max_turns=12).run_sync(tasks)
    local = RolloutRunner(policy, n=2, concurrency=8, max_turns=12).run_sync(tasks)
    assert remote.summary()["failed"] == 0
    assert steps_of(remote) == steps_of(local)  # household's text actions go through the host's on_text
    assert [(t.success, t.reward, t.env) for t in remote.trajectories] == \
        [(t.success, t.reward, t.env) for t in local.trajectories]
    assert [p["episodes"] for p in pool.placement()] == [0, 0]  # every environment was given back


class Pair(ag.Environment):
    """Roles a then b, one turn each; ``current_agent()`` has no answer once both have acted."""

    agents = {"a": "You are A.", "b": "You are B."}

    async def reset(self, task: ag.Task) -> str:
        return "go"

    def current_agent(self) -> str:
        return ("a", "b")[self.turn]

    @ag.tool
    async def move(self) -> str:
        """Move."""
        if self.turn == 2:
            self.finish(1.0)
        return "moved"

    def expert_action(self) -> ToolCall:
        return ToolCall(name="move", arguments={})


class Undecided(Pair):
    """``current_agent()`` raises before the second turn."""

    def current_agent(self) -> str:
        if self.turn == 1:
            raise ValueError("nobody's turn")
        return "a"


class TwoPart(Exception):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def test_a_current_agent_error_that_cannot_be_rebuilt_travels_as_its_text():
    from agentgym.trainers.ray_envs import RemoteHostError, _Raised

    assert type(_Raised(ValueError("x")).error) is ValueError
    error = _Raised(TwoPart("turn", "unknown")).error  # pickles, but cannot be unpickled: __init__ takes two
    assert type(error) is RemoteHostError and str(error) == "TwoPart: turn: unknown"


def test_multi_agent_environments_keep_their_roles_remotely(pool):
    from agentgym.trainers.tiny import register_relay

    ag.register("pair-test-v0", Pair)
    (pair,) = RolloutRunner("expert", env=pool.envs("pair-test-v0")).run_sync([ag.Task(id="p", env="pair-test-v0")]
                                                                             ).trajectories
    assert pair.success and pair.error is None and [s.agent for s in pair.steps] == ["a", "b"]
    ag.register("undecided-test-v0", Undecided)
    task = ag.Task(id="u", env="undecided-test-v0")
    (remote,) = RolloutRunner("expert", env=pool.envs()).run_sync([task]).trajectories
    (local,) = RolloutRunner("expert").run_sync([task]).trajectories
    assert remote.error == local.error == "environment current_agent raised ValueError: nobody's turn"
    assert len(remote.steps) == len(local.steps) == 1
    register_relay()
    tasks = ag.load_tasks("tiny-relay-v0", "train")
    remote = RolloutRunner("random", env=pool.envs(), n=4).run_sync(tasks)
    local = RolloutRunner("random", n=4).run_sync(tasks)
    assert steps_of(remote) == steps_of(local)
    assert [[(s.agent, s.messages) for s in t.steps] for t in remote.trajectories] == \
        [[(s.agent, s.messages) for s in t.steps] for t in local.trajectories]
    assert {s.agent for t in remote.trajectories for s in t.steps} == {"scout", "opener"}


async def test_environments_live_in_the_host_processes_spread_over_hosts(pool):
    task = ag.load_tasks("household-v0", "test-unseen")[0]
    envs = [pool.make("household-v0") for _ in range(4)]
    try:
        for env in envs:
            assert (await env.reset(task)).startswith("You are in the middle of a room")
        hosts = [env.host for env in envs]
        assert os.getpid() not in {pid for _, pid in hosts}
        assert len(set(hosts)) == 2 and [p["episodes"] for p in pool.placement()] == [2, 2]
        result = await envs[0].step(await envs[0].expert_action())
        assert result.valid and envs[0].state_key() == result.state_key
    finally:
        for env in envs:
            await env.aclose()
    assert [p["episodes"] for p in pool.placement()] == [0, 0]
    with pytest.raises(ag.errors.EnvironmentClosedError):
        await envs[0].reset(task)


def test_environment_errors_arrive_as_in_process_and_the_run_goes_on(pool):
    tasks = [fragile("ok"), fragile("bad", fail="raise"), fragile("ok2")]
    remote = RolloutRunner("expert", env=pool.envs("fragile-test-v0")).run_sync(tasks)
    local = RolloutRunner("expert").run_sync(tasks)
    assert [t.error for t in remote.trajectories] == [t.error for t in local.trajectories] == \
        [None, "environment step raised ValueError: broke at turn 2", None]
    assert [len(t.steps) for t in remote.trajectories] == [3, 1, 3]  # the step before the failure is kept
    # where it was raised: the same place, read from the actor's traceback
    assert remote.trajectories[1].metadata["error_at"] == local.trajectories[1].metadata["error_at"]
    assert local.trajectories[1].metadata["error_at"].startswith("test_ray_envs.py, line ")
    assert remote.trajectories[1].metadata["traceback"].rstrip().endswith("ValueError: broke at turn 2")


@pytest.mark.parametrize("fail", ["hang", "hang_expert"])
def test_a_step_time_limit_cancels_the_remote_call(pool, tmp_path, fail):
    """A hanging step, or a hanging expert hook (a round trip too, when the environment is remote)."""
    log = tmp_path / "hang.log"
    runner = RolloutRunner("expert", env=pool.envs("fragile-test-v0"), step_timeout=1.0)
    (traj,) = runner.run_sync([fragile("hang", fail=fail, log=str(log))]).trajectories
    assert traj.error == "environment step timed out after 1 s"
    assert len(traj.steps) == (1 if fail == "hang" else 0)
    assert asyncio.run(_wait_for_file(log)) and log.read_text().startswith("cancelled in pid")
    assert int(log.read_text().split()[-1]) in {p["pid"] for p in pool.placement()}


def test_a_custom_scripted_policy_calls_its_own_hook_remotely(pool):
    tasks = [fragile("a"), fragile("b")]
    remote = RolloutRunner(CautiousPolicy(), env=pool.envs("fragile-test-v0")).run_sync(tasks)
    assert [t.success for t in remote.trajectories] == [True, True]
    assert [s.response for s in remote.trajectories[0].steps] == ["add 1"] * 3
    assert remote.trajectories[0].steps[0].action == ToolCall(name="add", arguments={"n": 1})


async def _wait_for_file(path: Path, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if path.exists():
            return True
        await asyncio.sleep(0.05)
    return False


def test_a_dead_host_fails_its_episodes_and_is_replaced(pool):
    """Episodes go to the least busy host: 0, 1, 0, 1. The first kills host 0 mid-episode, which
    fails the third too (still running there); host 1's episodes finish; a new host 0 serves the next run."""
    before = {p["index"]: p["pid"] for p in pool.placement()}
    runner = RolloutRunner("expert", env=pool.envs("fragile-test-v0"), concurrency=4)
    result = runner.run_sync([fragile("dies", fail="exit", slow=0.2), fragile("a", slow=0.2),
                              fragile("with-it", slow=0.5), fragile("b", slow=0.2)])
    errors = [t.error for t in result.trajectories]
    assert errors[1] is None and errors[3] is None
    for error in (errors[0], errors[2]):
        assert error.startswith(f"environment step raised RemoteHostError: environment host 0 (") or \
            error.startswith("scripted policy failed: RemoteHostError: environment host 0 (")
        assert f"pid {before[0]}) died: " in error and "\n" not in error
    assert [p["dead"] for p in pool.placement()] == [True, False]
    again = runner.run_sync([fragile("c"), fragile("d")])  # the next episode placed starts a new host 0
    assert [t.success for t in again.trajectories] == [True, True]
    after = pool.placement()
    assert not any(p["dead"] for p in after) and after[1]["pid"] == before[1]
    assert after[0]["pid"] not in (None, before[0])


def test_closing_a_pool_closes_its_unfinished_environments_and_leaves_a_ray_it_joined(pool, tmp_path):
    log = tmp_path / "closed.log"
    with RayEnvPool(hosts=1, num_cpus=0.5) as other:  # joins the Ray the module's pool started
        env = other.make("fragile-test-v0")
        assert asyncio.run(env.reset(fragile("open", close_log=str(log)))) == "Count to 3."
        (pid,) = [p["pid"] for p in other.placement()]
    assert log.read_text() == f"closed in pid {pid}"
    assert ray.is_initialized()
    assert RolloutRunner("expert", env=pool.envs("fragile-test-v0")).run_sync([fragile("still")]).trajectories[0].success


def test_bad_input_is_refused_with_the_fix(pool):
    with pytest.raises(ConfigError, match="hosts must be a positive"):
        RayEnvPool(hosts=0)
    with pytest.raises(ConfigError, match=r"need 10000 CPUs; the Ray cluster has .* free"):
        RayEnvPool(hosts=10_000)  # joins the running Ray
    with pytest.raises(UnknownEnvironmentError, match="household-v0"):
        pool.envs("househld-v0")



def _rollout(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentgym", "rollout", "--no-progress", "--policy", "expert", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_rollout_command_with_environment_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a cluster named elsewhere: without --ray-address, a new local Ray
    out = _rollout("--env", "household-v0", "--limit", "6", "--n", "2", "--ray-hosts", "2", "--out", "hosts",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "12 episodes of household-v0/test-unseen with expert" in out.stdout and "success rate        100.0%" in out.stdout
    assert (tmp_path / "hosts" / "trajectories" / "rollout.jsonl").read_text().count("\n") == 12
    for address, message in (("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1 (Connection refused); start one "
                                              "with `ray start --head` or fix the address"),
                              ("head-node", "Ray address 'head-node': expected 'auto', 'host:port' or 'ray://host:port'")):
        out = _rollout("--ray-hosts", "1", "--ray-address", address, "--out", "bad", cwd=tmp_path)
        assert out.returncode == 2 and message in " ".join(out.stderr.split()), out.stderr
        assert not (tmp_path / "bad").exists()
    out = _rollout("--ray-address", "auto", "--out", "bad", cwd=tmp_path)
    assert out.returncode == 2 and "--ray-address names the cluster for --ray-hosts N; give both" in out.stderr
    assert not (tmp_path / "bad").exists()


def test_without_ray_the_error_names_the_extra():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from agentgym.trainers.ray_envs import RayEnvPool\n"
            "try:\n    RayEnvPool(hosts=1)\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ConfigError environments in Ray actors need Ray: pip install 'agentgym[distributed]'"


@pytest.mark.slow
def test_training_with_environment_hosts_collects_what_in_process_training_does(tmp_path):
    """`agentgym train` with rollout.ray_hosts: the same first-step rollouts (before any update) as
    in-process training; `agentgym eval --ray-hosts 0` of that run repeats its evaluation in-process."""
    import json

    import yaml

    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from train_tiny import tiny_config

    from agentgym.trainers.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "model")
    runs = {}
    for name, hosts in (("local", 0), ("ray", 2)):
        config = tiny_config(model, tmp_path / name, steps=2)
        config["rollout"].update(tasks_per_step=4, group_size=4, ray_hosts=hosts, ray_cpus_per_host=0.5)
        config["eval"] = {"every": 2, "max_tasks": 4}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        out = subprocess.run([sys.executable, "-m", "agentgym", "train", "--no-progress", f"{name}.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = tmp_path / name

    def first_step(run: Path) -> list[tuple]:
        lines = (run / "trajectories" / "train-000001.jsonl").read_text().splitlines()
        return sorted((t["task_id"], t["seed"], [(s["response"], s["result"]["observation"], s["result"]["reward"])
                                                 for s in t["steps"]]) for t in map(json.loads, lines))  # finish order

    assert first_step(runs["ray"]) == first_step(runs["local"])
    def evaluation(run: Path) -> dict:
        lines = (run / "trajectories" / "eval-test-000002.jsonl").read_text().splitlines()
        return {(t["task_id"], t["seed"]): [s["response"] for s in t["steps"]] for t in map(json.loads, lines)}

    assert len(evaluation(runs["ray"])) == 4
    # `agentgym eval` of the run with hosts, in this process: the run's own evaluation again
    out = subprocess.run([sys.executable, "-m", "agentgym", "eval", "ray", "--ray-hosts", "0", "--no-progress",
                          "--out", "eval-here"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert evaluation(tmp_path / "eval-here") == evaluation(runs["ray"])
