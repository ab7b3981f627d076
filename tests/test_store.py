"""Run store: round trips, and appends that survive a SIGKILL mid-write."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agentgym.errors import ConfigError
from agentgym.store import RunStore, writing
from agentgym.types import Message, Step, StepResult, ToolCall, Trajectory


def _trajectory(i: int, size: int = 3) -> Trajectory:
    steps = [Step(index=k, messages=[Message(role="user", content="x" * 50)], prompt_ids=list(range(40)),
                  response="add(n=1)", response_ids=[5, 6, 7], logprobs=[-0.1, -0.2, -0.3],
                  action=ToolCall(name="add", arguments={"n": 1}), state_key=str(k),
                  result=StepResult(observation="ok", reward=float(k == size - 1), state_key=str(k + 1)))
             for k in range(size)]
    return Trajectory(id=f"traj-{i}", group_id=f"g{i // 4}", task_id="t", env="counter-v0", steps=steps,
                      reward=1.0, success=True, terminated=True)


def test_trajectories_metrics_and_config_round_trip(tmp_path):
    store = RunStore(tmp_path / "run")
    trajs = [_trajectory(i) for i in range(5)]
    for t in trajs:
        store.append_trajectory(t, name="train")
    store.append_metrics({"step": 1, "success": 0.5})
    store.write_config({"env": "counter-v0", "n": 4})
    again = RunStore(tmp_path / "run")
    assert again.load_trajectories() == trajs
    assert again.load_metrics() == [{"step": 1, "success": 0.5}]
    assert again.read_config() == {"env": "counter-v0", "n": 4}
    assert not (tmp_path / "run" / "checkpoints").exists()  # a rollout directory holds none


def test_an_exclusive_config_claims_the_directory_once(tmp_path):
    first, second = RunStore(tmp_path / "run"), RunStore(tmp_path / "run")  # two runs, one --out
    first.write_config({"run": 1}, exclusive=True)
    with pytest.raises(FileExistsError):
        second.write_config({"run": 2}, exclusive=True)
    assert first.read_config() == {"run": 1}
    assert not list((tmp_path / "run").glob("*.tmp"))  # no temporary file left
    second.write_config({"run": 3})  # not exclusive: replaces (a resumed run)
    assert first.read_config() == {"run": 3}


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows: runs are not locked there")
def test_one_process_at_a_time_writes_a_run_and_a_failed_mkdir_says_why(tmp_path):
    with writing(tmp_path):
        with pytest.raises(ConfigError, match="another process is writing the run"):
            with writing(tmp_path):
                pass
    with writing(tmp_path):  # released when the first block ended
        pass
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="cannot use .*afile/sub as a run directory: Not a directory"):
        RunStore(tmp_path / "afile" / "sub")



@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_file_system_that_takes_no_lock_warns_and_the_run_goes_on(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:  # what NFS answers for a directory opened read-only
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = False
    with pytest.warns(RuntimeWarning, match="cannot lock the run directory .*: a second trainer of this run would not"):
        with writing(tmp_path):
            ran = True
    assert ran


def test_torn_last_line_is_skipped_and_sealed(tmp_path):
    store = RunStore(tmp_path)
    store.append_trajectory(_trajectory(0))
    path = store.trajectory_dir / "rollout.jsonl"
    with open(path, "a") as fh:
        fh.write(_trajectory(1).model_dump_json()[:100])  # what a killed writer leaves
    assert [t.id for t in store.load_trajectories()] == ["traj-0"]
    store.append_trajectory(_trajectory(2))
    assert [t.id for t in store.load_trajectories()] == ["traj-0", "traj-2"]
    # a line damaged in the middle (an edit gone wrong) is no torn write: it is reported, not dropped
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('","', '" "', 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"rollout.jsonl, line 3: not a trajectory \(fix or delete that line\): "
                       r"'record': Invalid JSON: expected `,` or `}` at line 1 column \d+$"):
        store.load_trajectories()


def test_non_finite_floats_round_trip_and_a_line_that_is_no_trajectory_is_reported(tmp_path):
    import math

    import pytest

    store = RunStore(tmp_path)
    odd = _trajectory(0)
    odd.steps[0].logprobs = [-math.inf, -0.2, -0.3]
    odd.steps[0].result.info["score"] = math.nan
    store.append_trajectory(odd)
    (back,) = store.load_trajectories()
    assert back.steps[0].logprobs[0] == -math.inf and math.isnan(back.steps[0].result.info["score"])
    path = store.trajectory_dir / "rollout.jsonl"
    with open(path, "a") as fh:
        fh.write('{"id": "x", "group_id": "g"}\n')  # whole JSON, but not a trajectory: not silently dropped
    with pytest.raises(ConfigError, match=r"rollout.jsonl, line 2: not a trajectory \(fix or delete that line\): "
                       r"'task_id': Field required; 'env': Field required$"):  # one line, no pydantic links
        store.load_trajectories()


def test_sigkill_mid_write_loses_at_most_the_trajectory_being_written(tmp_path):
    writer = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_store import _trajectory
        from agentgym.store import RunStore
        store = RunStore({str(tmp_path)!r})
        print("ready", flush=True)
        i = 0
        while True:
            store.append_trajectory(_trajectory(i, size=200))
            i += 1
    ''')
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    path = tmp_path / "trajectories" / "rollout.jsonl"
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 1_000_000) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the writer died before it was killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    loaded = RunStore(tmp_path).load_trajectories()
    lines = path.read_bytes().count(b"\n")
    assert len(loaded) >= 1 and len(loaded) == lines  # every complete line loads
    assert [t.id for t in loaded] == [f"traj-{i}" for i in range(len(loaded))]  # no gaps, no duplicates
    assert all(len(t.steps) == 200 for t in loaded)


def test_a_hand_made_file_without_a_final_newline_keeps_its_last_record(tmp_path):
    from agentgym.store import read_trajectories

    path = tmp_path / "made.jsonl"
    path.write_text(_trajectory(0).model_dump_json() + "\n" + _trajectory(1).model_dump_json())
    assert [t.id for t in read_trajectories(path)] == ["traj-0", "traj-1"]
