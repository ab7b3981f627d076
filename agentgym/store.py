"""Run directories: config, trajectories, metrics and checkpoints of one run.

Layout::

    RUN_DIR/config.yaml
    RUN_DIR/trajectories/<name>.jsonl   one Trajectory per line
    RUN_DIR/metrics.jsonl               one JSON object per line
    RUN_DIR/config-changes.jsonl        settings a resumed run changed, and from which step
    RUN_DIR/checkpoints/step_00000012/  one per saved training step (trainers/checkpoint.py writes them)

Appends are crash-safe: each record is written with a single ``write`` of a complete line,
flushed and fsynced. A process killed mid-write can leave at most one torn last line, which
loading skips, so at most the record being written is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from agentgym.errors import ConfigError, validation_summary, yaml_problem
from agentgym.types import Trajectory


def _append_line(path: Path, line: str) -> None:
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size and not _ends_with_newline(fd):
            data = b"\n" + data  # seal a torn line left by a killed writer
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(fd: int) -> bool:
    return os.pread(fd, 1, os.fstat(fd).st_size - 1) == b"\n"


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``path`` with their 1-based numbers (a torn one fails to parse later)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, line


def read_trajectories(path: Path) -> list[Trajectory]:
    """The trajectories of one JSONL file.

    A torn line (JSON cut short, as a killed writer leaves it) is skipped. Any other line that is not
    a trajectory (damaged JSON, or whole JSON of something else) raises
    :class:`~agentgym.errors.ConfigError` naming the file and line: skipping it would lose the record
    without a word.
    """
    out = []
    for number, line in _read_lines(path):
        try:
            out.append(Trajectory.model_validate_json(line.rstrip("\r\n")))  # a cut string ends at the cut
        except ValidationError as exc:
            if all(e["type"] == "json_invalid" and "EOF while parsing" in e["msg"] for e in exc.errors()):
                continue  # a torn line, sealed by the next append
            raise ConfigError(f"{path}, line {number}: not a trajectory (fix or delete that line): "
                              f"{validation_summary(exc)}") from None
    return out


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file such as ``metrics.jsonl`` (none when it is missing); a torn line
    or one that holds no object is skipped."""
    out = []
    for _, line in _read_lines(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


CONFIG_CHANGES = "config-changes.jsonl"  # settings a resume changed, by the step they start after

# sections only an RL run's config has: an SFT run's config is a subset of a training config's
_RL_SECTIONS = ("update", "credit", "loss", "optim", "horizon", "checkpoint")


def run_kind(config: dict[str, Any]) -> str:
    """Which command wrote a run's ``config.yaml``: ``train``, ``sft``, ``rollout`` or ``eval`` (``""`` for none)."""
    if config.get("command") in ("rollout", "eval"):
        return str(config["command"])
    if any(k in config for k in _RL_SECTIONS):
        return "train"
    return "sft" if config else ""


_CHECKPOINT = re.compile(r"^step_(\d{8})$")


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint after training step ``step``."""
    return f"step_{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (a run's ``checkpoints/``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def trained_model(run_dir: str | Path) -> Path | None:
    """What a run directory has trained: its newest checkpoint, else the ``model/`` an SFT run saves, else None."""
    run_dir = Path(run_dir)
    found = latest_checkpoint(run_dir / "checkpoints")
    if found is None and (run_dir / "model").is_dir():
        found = run_dir / "model"
    return found


def claim_run_dir(base: str | Path) -> Path:
    """Create and return ``base``, or ``base-2``, ``base-3``, ... when taken: two runs started in the same
    second get one directory each (mkdir is atomic)."""
    base = Path(base)
    path, n = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
    except OSError as exc:
        raise ConfigError(f"cannot create the run directory {path}: {exc.strerror or exc}") from None


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """RUN_DIR/config.yaml as a dict (empty when there is none), creating nothing.

    Raises :class:`ConfigError` naming the file when it is not a YAML mapping.
    """
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is damaged: {yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if data is None:
        raise ConfigError(f"{path} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is damaged: it holds a {type(data).__name__}, not a mapping of sections")
    return data


@contextlib.contextmanager
def writing(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for one writing process: a second trainer of the same run fails at once.

    An advisory lock on the directory itself (``flock``), released when the block ends or the
    process dies, so a killed run never leaves a stale lock behind. Where the file system takes
    no lock (NFS, some FUSE mounts), it warns and goes on.
    """
    try:
        import fcntl
    except ImportError:  # not on Linux or macOS: no lock
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another process is writing the run in {run_dir}; wait for it to end or stop it "
                              "first") from None
        except OSError as exc:  # NFS (an exclusive lock needs a file open for writing), Lustre, some FUSE mounts
            import warnings

            warnings.warn(f"cannot lock the run directory {run_dir} ({exc.strerror or exc}): a second trainer of "
                          "this run would not be stopped", RuntimeWarning, stacklevel=3)
        yield
    finally:
        os.close(fd)  # releases the lock


class RunStore:
    """A run directory; creates its folders on first use."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.trajectory_dir = self.root / "trajectories"
        self.checkpoint_dir = self.root / "checkpoints"
        self.metrics_path = self.root / "metrics.jsonl"
        self.config_path = self.root / "config.yaml"
        self.config_changes_path = self.root / CONFIG_CHANGES
        try:
            self.trajectory_dir.mkdir(parents=True, exist_ok=True)  # checkpoints/ appears with the first one
        except OSError as exc:
            raise ConfigError(f"cannot use {self.root} as a run directory: {exc.strerror or exc}") from None

    def write_config(self, config: Any, *, exclusive: bool = False) -> None:
        """Write ``config`` (a pydantic model or a dict) as YAML, atomically. With ``exclusive``, only where
        no config is yet (``FileExistsError`` otherwise): two runs started in one directory at once get
        one config each, never a shared directory."""
        import yaml

        data = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
        tmp = self.config_path.with_suffix(f".yaml.{os.getpid()}.tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        if not exclusive:
            os.replace(tmp, self.config_path)
            return
        try:
            os.link(tmp, self.config_path)  # fails when the file exists, unlike a rename
        finally:
            tmp.unlink()

    def read_config(self) -> dict[str, Any]:
        """The run's config as a dict (empty when none was written)."""
        return read_run_config(self.root)

    def append_config_change(self, record: dict[str, Any]) -> None:
        """Append one record of changed settings to ``config-changes.jsonl`` (config.yaml holds the latest)."""
        _append_line(self.config_changes_path, json.dumps(record))

    def append_trajectory(self, trajectory: Trajectory, name: str = "rollout") -> None:
        """Append one trajectory to ``trajectories/<name>.jsonl``."""
        _append_line(self.trajectory_dir / f"{name}.jsonl", trajectory.model_dump_json())

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one metrics record to ``metrics.jsonl``."""
        _append_line(self.metrics_path, json.dumps(record, default=float))

    def trajectory_files(self) -> list[Path]:
        """The trajectory files of the run, sorted by name."""
        return sorted(self.trajectory_dir.glob("*.jsonl"))

    def load_trajectories(self, name: str | None = None) -> list[Trajectory]:
        """Load trajectories (all files, or ``<name>.jsonl``), as :func:`read_trajectories` reads each."""
        files = [self.trajectory_dir / f"{name}.jsonl"] if name else self.trajectory_files()
        return [t for path in files for t in read_trajectories(path)]

    def load_metrics(self) -> list[dict[str, Any]]:
        """Load the metrics records."""
        return read_records(self.metrics_path)
