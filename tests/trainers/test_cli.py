"""`agentgym train` / `agentgym sft` on the command line, and the examples/train_tiny.py smoke run."""

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentgym.cli import app
from agentgym.store import RunStore

REPO = Path(__file__).resolve().parents[2]


def test_bad_key_names_the_key_and_exits_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss:\n  clip_hihg: 0.3\n")
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "loss.clip_hihg" in result.output and "loss.clip_high" in result.output


def test_set_errors_and_missing_config():
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(REPO / "examples" / "household_quickstart.yaml"), "--set", "loss.clip_ratio_c=1"])
    assert result.exit_code == 2 and "clip_ratio_c must be greater than 1" in result.output
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_keys_lists_every_key_with_help():
    result = CliRunner().invoke(app, ["train", "--keys"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for key in ("loss.clip_high", "credit.estimator", "update.ppo_epochs", "checkpoint.keep_last", "sft.expert_tasks"):
        assert key in result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert "One of: 'full', 'window', 'summary'." in flat  # context.type
    assert "credit.estimator 'gigpo'" in flat  # the trainer's default, not CreditConfig's own 'grpo'
    narrow = CliRunner().invoke(app, ["train", "--keys"], env={"COLUMNS": "80"})  # a pipe's width
    for key in ("policy.gradient_checkpointing", "credit.summarization.overlong_mask",
                "credit.summarization.overlong_in_stats"):
        assert f"│ {key} " in narrow.output  # whole, not cut with "…"
    assert "…" not in narrow.output


def test_sft_keys_needs_no_config_and_sft_without_one_is_a_usage_error():
    runner = CliRunner()
    keys = runner.invoke(app, ["sft", "--keys"], env={"COLUMNS": "200"})
    assert keys.exit_code == 0 and "sft.epochs" in keys.output and "loss.clip_high" not in keys.output
    bare = runner.invoke(app, ["sft"])
    assert bare.exit_code == 2 and "give an SFT config" in bare.output


@pytest.mark.parametrize("with_config", [False, True])
def test_resuming_a_rollout_directory_says_what_it_is_and_changes_nothing(tmp_path, with_config):
    from agentgym.store import RunStore

    run = tmp_path / "r"
    RunStore(run).write_config({"command": "rollout", "env": "household-v0", "n": 2})
    (run / "metrics.jsonl").write_text('{"success_rate": 1.0}\n')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    config = [str(REPO / "examples" / "household_quickstart.yaml")] if with_config else []
    result = CliRunner().invoke(app, ["train", *config, "--resume", str(run)])
    assert result.exit_code == 2 and "a run directory of `agentgym rollout`" in " ".join(result.output.split())
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_without_a_config_creates_nothing_and_refuses_a_run_dir_beside_it(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "has no config.yaml" in " ".join(result.output.split())
    assert not list((tmp_path / "empty").iterdir())
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--run-dir" in result.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("name: ../../escape\n", "name '../../escape' cannot name a run directory: use letters, digits"),
    ("name: a/b\n", "name 'a/b' cannot name a run directory"),
    (b"name: \xff\xfe\n", "cannot read config file"),
    (None, "cannot read config file"),  # a directory
    ("loss:\n  clip_high: [0.3\n", "is not valid YAML: expected ',' or ']', but got '<stream end>' at line 3, column 1"),
    ("name: a\nloss:\n  clip_high: 0.3\nname: b\n", "is not valid YAML: the key 'name' is given twice at line 4, column 1"),
])
def test_unusable_configs_and_run_names_are_refused_before_anything_runs(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    if content is None:
        cfg.mkdir()
    elif isinstance(content, bytes):
        cfg.write_bytes(content)
    else:
        cfg.write_text(content)
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs").exists() and not list(tmp_path.parent.glob("escape*"))


def test_a_run_directory_that_cannot_be_made_is_a_one_line_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(app, ["train", str(REPO / "examples" / "household_quickstart.yaml"),
                                      "--run-dir", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 2 and "cannot use" in result.output and "Not a directory" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command, message", [
    (["train", str(REPO / "examples" / "household_quickstart.yaml"), "--set", "env.id=nope-v0"],
     "unknown environment 'nope-v0'"),
    (["train", str(REPO / "examples" / "household_quickstart.yaml"), "--set", "env.eval_suites=[nope]"],
     "has no task suite 'nope'"),
    (["sft", str(REPO / "examples" / "household_sft.yaml"), "--data", "/nowhere/expert"],
     "'/nowhere/expert' is neither a run directory nor a .jsonl file"),
])
def test_bad_inputs_fail_before_the_model_loads_and_leave_no_run_directory(tmp_path, monkeypatch, command, message):
    result = CliRunner().invoke(app, [*command, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "run").exists()
    monkeypatch.chdir(tmp_path)  # the default runs/<name>-<time>, claimed early, is given back
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and not list((tmp_path / "runs").iterdir())


def test_sft_without_data_says_how_to_get_it(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("name: s\n")
    result = CliRunner().invoke(app, ["sft", str(cfg)])
    assert result.exit_code == 2 and "agentgym rollout --policy expert" in result.output


def test_run_dir_and_data_paths_are_taken_as_typed(tmp_path):
    used = tmp_path / "q #1: x"  # YAML would read '#1' as a comment and ': x' as a mapping
    used.mkdir()
    (used / "config.yaml").write_text("name: other\n")
    result = CliRunner().invoke(app, ["train", str(REPO / "examples" / "household_quickstart.yaml"), "--run-dir", str(used)])
    assert result.exit_code == 2 and f"{used} already holds a run" in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["sft", str(REPO / "examples" / "household_sft.yaml"), "--data", str(used / "it's")])
    assert result.exit_code == 2 and "q #1: x/it's" in result.output and "neither a run directory" in result.output


@pytest.mark.slow
def test_train_tiny_example_smoke(tmp_path):
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny.py"), "--steps", "2",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step    2/2" in out.stdout and (tmp_path / "run" / "checkpoints" / "step_00000002").is_dir()
    config = RunStore(tmp_path / "run").read_config()  # the tiny model lives with its run
    assert config["policy"]["model"] == f"hf:{tmp_path / 'run' / 'tiny-model'}" and (tmp_path / "run" / "tiny-model").is_dir()
    again = subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny.py"), "--steps", "2",
                            "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "already holds a run" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])  # Ctrl-C, or kill / a cluster's scheduler
def test_ctrl_c_names_the_run_directory_and_resume_finishes_the_run(tmp_path, stop):
    """A new run interrupted mid-training says how to continue; that command ends the run."""
    import json
    import signal
    import time

    import yaml

    pytest.importorskip("torch")
    sys.path.insert(0, str(REPO / "examples"))
    from train_tiny import tiny_config

    from agentgym.trainers.tiny import make_tiny_model

    config = tiny_config(make_tiny_model(tmp_path / "model"), tmp_path / "unused", steps=8)
    del config["run_dir"]  # the default runs/<name>-<time>, relative to the working directory
    config["eval"] = {"every": 0}
    config["checkpoint"] = {"every": 2, "keep_last": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "agentgym", "train", "--no-progress"]
    run = subprocess.Popen([*command, "c.yaml"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def steps_done() -> int:
        lines = [json.loads(x) for f in tmp_path.glob("runs/*/metrics.jsonl") for x in f.read_text().splitlines()]
        return max((m["step"] for m in lines if "loss" in m or "success" in m), default=0)

    deadline = time.monotonic() + 300
    while steps_done() < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(getattr(signal, stop))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err[-2000:]
    (run_dir,) = tmp_path.glob("runs/tiny-doors-*")
    assert f"continue with: agentgym train --resume runs/{run_dir.name}" in err
    assert steps_done() < 8
    resumed = subprocess.run([*command, "--resume", f"runs/{run_dir.name}"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert steps_done() == 8


@pytest.mark.slow
def test_ctrl_c_during_sft_names_the_run_directory_and_saves_no_model(tmp_path):
    import signal
    import time

    import yaml

    pytest.importorskip("torch")
    sys.path.insert(0, str(REPO / "examples"))
    from train_tiny import tiny_config

    from agentgym.trainers.tiny import make_tiny_model

    config = tiny_config(make_tiny_model(tmp_path / "model"), tmp_path / "unused")
    config = {k: config[k] for k in ("env", "policy", "sampling", "rollout")}
    config["sft"] = {"expert_tasks": 8, "epochs": 10_000, "batch_size": 4, "micro_batch_size": 4}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.Popen([sys.executable, "-m", "agentgym", "sft", "--no-progress", "s.yaml"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("runs/*/config.yaml")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # into the expert rollout or the updates
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    # -SIGINT: CPython kills itself with SIGINT at exit when the interrupt landed in an exec() of a
    # string (dataclasses, during the torch import), even though it was caught; a shell sees 130 both ways
    assert run.returncode in (130, -signal.SIGINT), err[-2000:]
    (run_dir,) = tmp_path.glob("runs/sft-*")
    assert f"interrupted: no model was saved in runs/{run_dir.name}" in err
    assert not (run_dir / "model").exists()


@pytest.mark.slow
def test_no_progress_hides_hugging_faces_bars_too(tmp_path, tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}  # an earlier test's

    def rollout(*flags):
        out = tmp_path / f"run{len(flags)}"
        return subprocess.run([sys.executable, "-m", "agentgym", "rollout", "--policy", f"hf:{tiny_model_dir}",
                               "--limit", "1", "--max-turns", "1", "--max-new-tokens", "2", "--out", str(out), *flags],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)

    logged, hidden = rollout(), rollout("--no-progress")  # stdout and stderr are pipes, as into a log file
    assert logged.returncode == 0 and hidden.returncode == 0, logged.stderr[-2000:] + hidden.stderr[-2000:]
    assert "Loading weights" not in logged.stderr and "━━━ 1/1" in logged.stdout  # ours prints its end once
    assert "Loading weights" not in hidden.stderr + hidden.stdout and "━" not in hidden.stdout
    assert hidden.stdout.startswith("1 episodes of household-v0/test-unseen")
    # where standard error is a terminal, Hugging Face's bars stay on (unless --no-progress)
    probe = ("import os, sys; from agentgym.policies.hf import hf_progress; hf_progress(sys.argv[1] == 'on'); "
             "print(os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'))")
    for show, terminal, disabled in (("on", True, "None"), ("off", True, "1"), ("on", False, "1")):
        master, slave = pty.openpty()
        try:
            done = subprocess.run([sys.executable, "-c", probe, show], stdout=subprocess.PIPE, text=True, env=env,
                                  stderr=slave if terminal else subprocess.PIPE, timeout=120)
        finally:
            os.close(slave)
            os.close(master)
        assert done.stdout.strip() == disabled, (show, terminal, done.stdout)
    from agentgym.store import RunStore

    assert RunStore(tmp_path / "run0").read_config()["model"] == [str(tiny_model_dir.resolve())]  # what hf: named


def test_our_warnings_print_as_one_line_and_others_as_python_shows_them():
    import agentgym.registry
    import agentgym.trainers.rl
    from agentgym.cli import _format_warning

    for module in (agentgym.registry, agentgym.trainers.rl):  # the core, and a package folder of its own
        assert _format_warning(RuntimeWarning("do this"), RuntimeWarning, module.__file__, 3) == "warning: do this\n"
    other = _format_warning(UserWarning("theirs"), UserWarning, typer.__file__, 7, "x = 1")
    assert other.startswith(f"{typer.__file__}:7: UserWarning: theirs")
