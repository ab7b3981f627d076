"""A training run killed with SIGKILL at any moment resumes and ends with the same steps and
no duplicated or half-written trajectories or metrics (tiny model, real CLI, real subprocesses)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

STEPS, TASKS, GROUP = 6, 2, 4
EVAL_TASKS, EVAL_SAMPLES = 3, 4


def _start(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "agentgym", "train", *args, "--no-progress"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _train_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if "merged_rows" in m:
            out.append(m["step"])
    return out


def _kill_when(proc, ready, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed:\n{proc.stdout.read()[-3000:]}")
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run did not reach the kill point in time")


def test_sigkill_and_resume(tmp_path, tiny_model_dir, tiny_config):
    run_dir = tmp_path / "run"
    cfg = tiny_config(tiny_model_dir, run_dir, rollout={"tasks_per_step": TASKS, "group_size": GROUP},
                      update={"total_steps": STEPS},
                      eval={"every": 3, "max_tasks": EVAL_TASKS, "samples": EVAL_SAMPLES},
                      checkpoint={"every": 1, "keep_last": 2})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    repo = Path(__file__).resolve().parents[2]

    trajectories, ckpts = run_dir / "trajectories", run_dir / "checkpoints"
    # 1. kill in the middle of step 2 (its rollout has started streaming trajectories)
    proc = _start([str(path)], repo)
    _kill_when(proc, lambda: (trajectories / "train-000002.jsonl").exists())
    # 2. resume, and kill during the evaluation of step 3, which runs after its checkpoint
    proc = _start(["--resume", str(run_dir)], repo)
    _kill_when(proc, lambda: (trajectories / "eval-test-000003.jsonl").exists())
    assert (ckpts / "step_00000003").exists()  # the trained model is safe before the evaluation
    # 3. resume, and kill again right as a checkpoint is being written
    proc = _start(["--resume", str(run_dir)], repo)
    _kill_when(proc, lambda: any(p.name.startswith(".tmp-step_00000005") for p in ckpts.iterdir())
               or (ckpts / "step_00000005").exists())
    # 4. while another process trains the run, a second trainer of it stops at once and changes nothing
    from agentgym.store import writing

    before = (run_dir / "metrics.jsonl").read_bytes()
    with writing(run_dir):
        proc = _start(["--resume", str(run_dir)], repo)
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "another process is writing the run" in " ".join(out.split()), out[-3000:]
    assert (run_dir / "metrics.jsonl").read_bytes() == before
    # 5. resume to the end
    proc = _start(["--resume", str(run_dir)], repo)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "resumed" in out
    assert out.rstrip().endswith(f"step through its episodes: agentgym replay {run_dir}; "
                                 f"evaluate it again: agentgym eval {run_dir}")  # what a user may do next

    assert _train_steps(run_dir) == list(range(1, STEPS + 1))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [m["step"] for m in metrics if any(k.startswith("eval/") for k in m)]
    assert evals == [0, 3, 6]
    files = sorted(p.name for p in (run_dir / "trajectories").glob("*.jsonl"))
    assert files == ["eval-test-000000.jsonl", "eval-test-000003.jsonl", "eval-test-000006.jsonl",
                     *[f"train-{s:06d}.jsonl" for s in range(1, STEPS + 1)]]
    from agentgym.types import Trajectory

    for f in (run_dir / "trajectories").glob("*.jsonl"):
        lines = f.read_text().splitlines()
        assert len(lines) == (TASKS * GROUP if f.name.startswith("train") else EVAL_TASKS * EVAL_SAMPLES), f.name
        ids = [Trajectory.model_validate_json(line).id for line in lines]  # every line whole
        assert len(set(ids)) == len(ids)
    left = sorted(p.name for p in ckpts.iterdir())
    assert left == ["step_00000005", "step_00000006"]
    state = json.loads((ckpts / "step_00000006" / "trainer_state.json").read_text())
    assert state["step"] == STEPS
