"""`agentgym eval`: a trained run's checkpoint, evaluated as the run evaluated it."""

import pytest
from typer.testing import CliRunner

from agentgym.cli import app
from agentgym.errors import ConfigError
from agentgym.store import RunStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, tiny_config):
    """A 2-step tiny run that evaluated its test suite after step 2, with checkpoints of steps 1 and 2."""
    from agentgym.trainers.rl import train

    run = tmp_path_factory.mktemp("evaluate") / "run"
    config = tiny_config(tiny_model_dir, run, update={"total_steps": 2}, eval={"every": 2, "max_tasks": 6},
                          rollout={"tasks_per_step": 2, "group_size": 4}, checkpoint={"every": 1, "keep_last": 2})
    train(config, progress=False, log=lambda _l: None)
    return run


def _responses(path, name):
    return {(t.task_id, t.metadata["sample"]): [s.response for s in t.steps]
            for t in RunStore(path).load_trajectories(name)}


def test_eval_repeats_the_runs_own_evaluation_of_that_checkpoint(trained, tmp_path):
    from agentgym.trainers.evaluate import evaluate_run

    out, summaries = evaluate_run(trained, out=tmp_path / "eval", progress=False, log=lambda _l: None)
    theirs = _responses(trained, "eval-test-000002")
    assert _responses(out, "eval-test-000002") == theirs and len(theirs) == 4  # the suite's 4 tasks
    (ran,) = [m for m in RunStore(trained).load_metrics() if "eval/test/success" in m and m["step"] == 2]
    assert summaries["test"]["success_rate"] == ran["eval/test/success"]
    assert RunStore(out).load_metrics()[0]["eval/test/success"] == ran["eval/test/success"]
    assert RunStore(out).read_config()["step"] == 2
    # an earlier checkpoint, more tasks: the run's records are only read
    before = sorted(p.name for p in (trained / "trajectories").iterdir())
    said: list[str] = []
    announced = []  # the output directory, and the episodes in it then: none yet (an interrupt keeps what follows)
    out1, summaries1 = evaluate_run(trained, checkpoint="step_1", limit=3, samples=2, out=tmp_path / "eval1",
                                    progress=False, log=said.append,
                                    on_output=lambda root: announced.append((root, RunStore(root).load_trajectories())))
    assert summaries1["test"]["episodes"] == 6 and RunStore(out1).read_config()["step"] == 1
    assert said[0].startswith("note: the run evaluates greedily (sampling.eval_temperature 0), so the 2 samples")
    assert said[1].startswith("evaluating hf:") and said[1].endswith(f"(step 1 of {trained}) into {out1}")
    assert announced == [(out1, [])]
    assert sorted(p.name for p in (trained / "trajectories").iterdir()) == before


def test_eval_command_prints_a_table_and_refuses_what_it_cannot_evaluate(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # restored afterwards: --no-progress sets it
    res = CliRunner().invoke(app, ["eval", str(trained), "--policy", "expert", "--limit", "3", "--out",
                                   str(tmp_path / "expert"), "--no-progress"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.output.split("\n")[-4].split() == ["test", "3", "100.0%", "1.500", "2.00", "0.0%", "0", "0"]
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "config.yaml").write_text("a: [\n")
    for args, message in [
        ([str(trained), "--checkpoint", "7"], "has no checkpoint 'step_00000007'; it has: step_00000001, step_00000002"),
        ([str(trained), "--suite", "nope"], "has no task suite 'nope'"),
        ([str(trained), "--checkpoint", "1", "--policy", "expert"], "give a checkpoint or a policy, not both"),
        ([str(tmp_path / "expert")], "is a run directory of `agentgym eval`, not of a training run"),
        ([str(tmp_path / "nowhere")], "does not exist"),
        ([str(trained), "--out", str(trained)], "already holds files"),
        ([str(trained), "--out", str(trained / "config.yaml")], "config.yaml is not a directory"),
        ([str(trained / "checkpoints" / "step_00000001")], "is a checkpoint: give its run directory, and --checkpoint"),
        ([str(trained), "--checkpoint", "latest"], "--checkpoint 'latest': give a step number such as 8"),
        ([str(tmp_path / "damaged")],
         "damaged/config.yaml is damaged: expected the node content, but found '<stream end>' at line 2, column 1"),
        ([str(trained), "--out", str(trained / "config.yaml" / "sub")], "Not a directory"),
    ]:
        res = CliRunner().invoke(app, ["eval", *args], env={"COLUMNS": "300"})
        assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output


def test_an_sft_run_is_evaluated_through_its_saved_model_and_its_own_config(tmp_path):
    from agentgym.trainers.config import SFTConfig, TrainConfig, load_config
    from agentgym.trainers.evaluate import model_of, run_config

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert model_of(tmp_path, None) == (tmp_path / "model", 0)
    with pytest.raises(ConfigError, match="no checkpoint and no model/ yet"):
        model_of(tmp_path / "model", None)
    store = RunStore(tmp_path)
    store.write_config(load_config({"sft": {"data": ["runs/expert"]}, "eval": {"max_tasks": 3}}, kind=SFTConfig))
    assert type(run_config(tmp_path)) is SFTConfig and run_config(tmp_path).eval.max_tasks == 3
    store.write_config(load_config({}))
    assert type(run_config(tmp_path)) is TrainConfig
    store.write_config({**load_config({}).model_dump(mode="json"), "context": {"type": "full", "window": 4}})
    with pytest.raises(ConfigError, match="context.window applies to context.type 'window'"):  # a training config's error
        run_config(tmp_path)


def test_run_config_of_a_step_sets_back_what_a_later_resume_changed(tmp_path):
    from agentgym.trainers.config import TrainConfig
    from agentgym.trainers.evaluate import run_config

    store = RunStore(tmp_path)
    config = TrainConfig().model_dump(mode="json")
    config["sampling"]["eval_temperature"], config["optim"]["lr"] = 0.7, 3e-6
    store.write_config(config)
    # resumed from step 2 with a new temperature, then from step 4 with a new learning rate
    store.append_config_change({"step": 2, "changes": {"sampling.eval_temperature": [0.0, 0.7]}})
    store.append_config_change({"step": 4, "changes": {"optim.lr": [1e-6, 3e-6], "sampling.eval_temperature": [0.7, 0.7]}})
    seen = {step: (c.sampling.eval_temperature, c.optim.lr)
            for step in (1, 2, 3, 4, 5, None) for c in [run_config(tmp_path, step)]}
    assert seen == {1: (0.0, 1e-6), 2: (0.0, 1e-6), 3: (0.7, 1e-6), 4: (0.7, 1e-6), 5: (0.7, 3e-6), None: (0.7, 3e-6)}
