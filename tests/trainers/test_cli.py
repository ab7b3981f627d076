"""`agentgym train` / `agentgym sft` on the command line, and the examples/train_tiny.py smoke run."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentgym.cli import app

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


def test_sft_without_data_says_how_to_get_it(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("name: s\n")
    result = CliRunner().invoke(app, ["sft", str(cfg)])
    assert result.exit_code == 2 and "agentgym rollout --policy expert" in result.output


@pytest.mark.slow
def test_train_tiny_example_smoke(tmp_path):
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny.py"), "--steps", "2",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step    2/2" in out.stdout and (tmp_path / "run" / "checkpoints" / "step_00000002").is_dir()
