"""What a training run refuses or guards against: episodes that all fail, another run's directory,
environment options the environment does not take, and held-out episodes in SFT data."""

from pathlib import Path

import pytest

import agentgym as ag
from agentgym.errors import AgentGymError, ConfigError
from agentgym.store import RunStore
from agentgym.trainers.config import load_config


class Broken(ag.Environment):
    """Every reset fails, as an environment with a missing dependency would."""

    async def reset(self, task: ag.Task) -> str:
        raise OSError("no database")


class Typed(ag.Environment):
    """Options of types YAML cannot write: a path and a tuple."""

    def __init__(self, *, rate: float = 1.0, folder: Path = Path("."), size: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.rate, self.folder, self.size = rate, folder, size

    async def reset(self, task: ag.Task) -> str:
        return "ready"


def _broken_config(tiny_model_dir, tiny_config, run_dir):
    ag.register("broken-run-v0", Broken,
                suites={"train": lambda: [ag.Task(id=f"b{i}", env="broken-run-v0") for i in range(4)]})
    cfg = tiny_config(tiny_model_dir, run_dir, env={"id": "broken-run-v0", "train_suite": "train", "eval_suites": []},
                      update={"total_steps": 3}, rollout={"tasks_per_step": 2, "group_size": 2}, eval={"every": 0})
    return load_config(cfg)


def test_a_step_whose_episodes_all_fail_stops_the_run(tmp_path, tiny_model_dir, tiny_config):
    from agentgym.trainers.rl import train

    with pytest.raises(AgentGymError, match=r"every episode of rollout 1 failed \(4 of them: environment reset "
                                            r"raised OSError: no database, at test_run_inputs.py, line \d+, "
                                            r"in reset\)"):
        train(_broken_config(tiny_model_dir, tiny_config, tmp_path / "run"), progress=False, log=lambda _l: None)
    assert not [m for m in RunStore(tmp_path / "run").load_metrics() if "loss" in m]  # no step was trained


def test_an_expert_warm_start_whose_episodes_all_fail_says_so(tmp_path, tiny_model_dir, tiny_config):
    from agentgym.trainers.rl import train

    class BrokenExpert(Broken):
        def expert_action(self) -> str:
            return "look"

    ag.register("broken-expert-v0", BrokenExpert,
                suites={"train": lambda: [ag.Task(id=f"b{i}", env="broken-expert-v0") for i in range(4)]})
    cfg = tiny_config(tiny_model_dir, tmp_path / "run", eval={"every": 0}, sft={"expert_tasks": 3},
                      env={"id": "broken-expert-v0", "train_suite": "train", "eval_suites": []})
    with pytest.raises(ConfigError, match="the expert rollout gives no training samples: none of its 3 "
                                          "trajectories is usable: 3 ended with an error"):
        train(cfg, progress=False, log=lambda _l: None)


def test_a_new_run_refuses_another_runs_directory_and_default_names_never_collide(tmp_path, monkeypatch,
                                                                                 tiny_model_dir, tiny_config):
    from agentgym.trainers.rl import new_run_dir, train

    cfg = _broken_config(tiny_model_dir, tiny_config, tmp_path / "used")
    RunStore(tmp_path / "used").write_config({"name": "an earlier run"})
    with pytest.raises(ConfigError, match="already holds a run: continue it with --resume"):
        train(cfg, progress=False, log=lambda _l: None)
    monkeypatch.chdir(tmp_path)
    unnamed = cfg.model_copy(update={"run_dir": None})
    first, second = new_run_dir(unnamed), new_run_dir(unnamed)  # the same second, most likely
    assert first != second and first.is_dir() and second.is_dir()


@pytest.mark.parametrize(("command", "setting", "message"), [
    ("train", "policy.model=nope", "policy.model must be 'smollm2' or 'hf:/path/to/model_dir' to be trained"),
    ("train", "policy.model=hf:/nowhere/model", "policy.model: '/nowhere/model' is not a model directory"),
    ("train", "policy.device=tpu", "policy.device: 'tpu' is not a device"),
    ("sft", "policy.model=nope", "policy.model must be 'smollm2'"),
])
def test_a_model_or_device_that_cannot_train_is_refused_before_the_run_directory_appears(tmp_path, command, setting,
                                                                                         message):
    from typer.testing import CliRunner

    from agentgym.cli import app

    run_dir = tmp_path / "run"
    config = "examples/household_quickstart.yaml" if command == "train" else "examples/household_sft.yaml"
    more = ["--set", "sft.expert_tasks=2"] if command == "sft" else []
    res = CliRunner().invoke(app, [command, config, "--set", setting, *more, "--run-dir", str(run_dir)])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not run_dir.exists()


def test_a_resume_keeps_the_model_and_environment_its_checkpoint_was_trained_with(tmp_path):
    from agentgym.trainers.rl import _check_resume

    config = load_config({})
    _check_resume({"policy.model": ("nope", "smollm2")}, None, config)  # nothing trained yet: nothing to keep
    checkpoint = tmp_path / "step-000001"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text('{"step": 1}')
    with pytest.raises(ConfigError, match="policy.model cannot change when a run resumes"):
        _check_resume({"policy.model": ("nope", "smollm2")}, checkpoint, config)
    with pytest.raises(ConfigError, match="env.id cannot change when a run resumes .* trained on the old environment"):
        _check_resume({"env.id": ("household-v0", "search-v0")}, checkpoint, config)
    # one model directory by another path is no change; another directory is
    (tmp_path / "model").mkdir()
    (tmp_path / "other").mkdir()
    _check_resume({"policy.model": (str(tmp_path / "model"), f"hf:{tmp_path}/other/../model/")}, checkpoint, config)
    with pytest.raises(ConfigError, match="policy.model cannot change"):
        _check_resume({"policy.model": (str(tmp_path / "model"), str(tmp_path / "other"))}, checkpoint, config)


def test_environment_options_are_checked_against_the_environment():
    from agentgym.trainers.rollouts import check_inputs

    with pytest.raises(ConfigError, match="env.options: got an unexpected keyword argument 'nope'"):
        check_inputs(load_config({"env": {"options": {"nope": 1}}}), train_suite=True)
    sql = {"id": "sql-v0", "train_suite": "train", "eval_suites": ["test"]}
    with pytest.raises(ConfigError, match=r"env.options: timeout='abc' is not a valid float"):
        check_inputs(load_config({"env": {**sql, "options": {"timeout": "abc"}}}), train_suite=True)
    with pytest.raises(ConfigError, match=r"env.options: SQLEnv\(backend='postgres'\) raised ConfigError: .*needs dsn"):
        check_inputs(load_config({"env": {**sql, "options": {"backend": "postgres"}}}), train_suite=True)
    with pytest.raises(ConfigError, match=r"env.options: max_rows=True is not a valid int"):  # lax would read 1
        check_inputs(load_config({"env": {**sql, "options": {"max_rows": True}}}), train_suite=True)
    with pytest.raises(ConfigError, match=r"reward_weights=\{'execution': False\} is not a valid"):  # nor 0.0 here
        check_inputs(load_config({"env": {**sql, "options": {"reward_weights": {"execution": False}}}}),
                     train_suite=True)
    # a connection string is not shown in an error (it may hold a password)
    with pytest.raises(ConfigError, match=r"SQLEnv\(backend='postgres', dsn=\.\.\., timeout=0.0\) raised") as err:
        check_inputs(load_config({"env": {**sql, "options": {"backend": "postgres", "dsn": "password=hunter2",
                                                              "timeout": 0}}}), train_suite=True)
    assert "hunter2" not in str(err.value)
    # values are read as the parameters' annotations ask: text to a number or a path, a list to a tuple
    ag.register("typed-options-v0", Typed, suites={"train": lambda: [ag.Task(id="t", env="typed-options-v0")]})
    config = load_config({"env": {"id": "typed-options-v0", "train_suite": "train", "eval_suites": [],
                                  "options": {"rate": "1e1", "folder": "/tmp", "size": [2, 3]}}})
    check_inputs(config, train_suite=True)
    assert config.env.options == {"rate": 10.0, "folder": Path("/tmp"), "size": (2, 3)}
    ag.register("no-options-v0", Broken, suites={"train": lambda: []})
    with pytest.raises(ConfigError, match=r"env.options: Broken takes no options, got \['size'\]"):
        check_inputs(load_config({"env": {"id": "no-options-v0", "train_suite": "train", "eval_suites": [],
                                          "options": {"size": 3}}}), train_suite=True)


def test_unset_eval_suites_fall_back_to_test_where_there_is_no_test_unseen():
    from agentgym.errors import UnknownSuiteError
    from agentgym.trainers.rollouts import check_inputs

    config = load_config({"env": {"id": "sql-v0"}})  # suites train, test-seen, test
    check_inputs(config, train_suite=True)
    assert config.env.eval_suites == ["test"]
    config = load_config({"env": {"id": "household-v0"}})
    check_inputs(config, train_suite=True)
    assert config.env.eval_suites == ["test-unseen"]
    with pytest.raises(UnknownSuiteError, match="env.eval_suites: environment 'sql-v0' has no task suite 'test-unseen'"):
        check_inputs(load_config({"env": {"id": "sql-v0", "eval_suites": ["test-unseen"]}}), train_suite=True)


def test_agents_a_config_names_are_checked_against_the_environments_roles():
    from agentgym.trainers.rollouts import check_inputs

    relay = {"id": "tiny-relay-v0", "plugins": ["agentgym.trainers.tiny:register_relay"], "train_suite": "train",
             "eval_suites": []}
    for config, message in [
        ({"env": relay, "context": {"type": "summary", "max_tokens": 100}},
         r"context.type: summary works on one conversation, and tiny-relay-v0 has several agents \(scout, opener\)"),
        ({"env": relay, "update": {"train_agents": ["opener", "nobody"]}},
         "update.train_agents: 'nobody' is not an agent of tiny-relay-v0; its agents: scout, opener"),
        ({"update": {"train_agents": ["opener"]}}, "'opener' is not an agent of household-v0; its agents: agent"),
        ({"update": {"train_agents": []}}, "update.train_agents is empty: no agent would learn"),
    ]:
        config = load_config(config)
        config.env.load_plugins()
        with pytest.raises(ConfigError, match=message):  # not a NO SIGNAL line at every step, or a failure later
            check_inputs(config, train_suite=True)


def test_sft_data_from_a_run_directory_leaves_out_its_held_out_evaluations(tmp_path):
    from agentgym.trainers.sft import load_trajectories

    store = RunStore(tmp_path)
    for name in ("expert", "train-000001", "eval-test-000001"):
        store.append_trajectory(ag.Trajectory(id=name, group_id="g", task_id="t", env="x-v0"), name=name)
    assert sorted(t.id for t in load_trajectories([str(tmp_path)])) == ["expert", "train-000001"]


@pytest.mark.parametrize(("trajectories", "why"), [
    ([], "it holds no trajectories"),
    ([{"success": False}, {"success": True, "error": "env died"}],
     r"none of its 2 trajectories is usable: 1 ended with an error and 1 did not solve their task"),
    ([{"success": True, "messages": None}], "its 1 usable trajectories recorded neither token ids nor prompt messages"),
])
def test_sft_data_without_a_trainable_turn_is_refused_before_the_model_loads(tmp_path, trajectories, why):
    from agentgym.trainers.rl import train
    from agentgym.trainers.sft import run_sft
    from agentgym.types import Message, Step, Trajectory

    data = tmp_path / "expert.jsonl"
    with open(data, "w") as fh:
        for i, t in enumerate(trajectories):
            messages = t.get("messages", [Message(role="user", content="look")])
            step = Step(index=0, response="look", messages=messages)
            fh.write(Trajectory(id=f"t{i}", group_id="g", task_id="x", env="household-v0", steps=[step],
                                success=t["success"], error=t.get("error")).model_dump_json() + "\n")
    # the model named here does not exist: reaching the model load would fail another way
    config = {"policy": {"model": f"hf:{tmp_path / 'no-model'}"}, "sft": {"data": [str(data)]}}
    for run in (train, run_sft):
        with pytest.raises(ConfigError, match=f"sft.data gives no training samples: {why}"):
            run({**config, "run_dir": str(tmp_path / run.__name__)}, progress=False, log=lambda _l: None)
        assert not (tmp_path / run.__name__).exists()
