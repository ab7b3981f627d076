"""What every sandbox back end shares: limits, results, the request to the in-sandbox launcher."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, Union, runtime_checkable

from agentgym.errors import EnvironmentClosedError, SandboxError, SandboxTimeout

Argv = Union[str, Sequence[str]]
Files = Mapping[str, Union[str, bytes]]

BOOTSTRAP = (Path(__file__).parent / "_bootstrap.py").read_text()

#: The names ExecResult.limit takes.
LIMITS = ("timeout", "cpu", "memory", "file_size", "processes", "output", "disk")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; a sandbox's defaults, overridden per call.

    ``timeout`` is wall-clock seconds (the whole process tree is killed past it); ``memory_mb`` is
    the address-space limit of each process; ``cpu_seconds`` the CPU time of each process;
    ``max_output_bytes`` caps stdout and stderr each (the run is stopped past it);
    ``file_size_mb`` caps each file written; ``max_processes`` the processes and threads alive at
    once; ``disk_mb`` the size of the work directory.
    """

    timeout: float = 10.0
    memory_mb: int = 512
    cpu_seconds: float = 10.0
    max_output_bytes: int = 64 * 1024
    file_size_mb: int = 16
    max_processes: int = 64
    disk_mb: int = 64
    open_files: int = 256

    def __post_init__(self) -> None:
        for name in ("timeout", "memory_mb", "cpu_seconds", "max_output_bytes", "file_size_mb",
                     "max_processes", "disk_mb", "open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"sandbox limit {name} must be a positive number, got {value!r}")

    def override(self, **values: Any) -> "Limits":
        """These limits with the given non-None values replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def rlimits(self) -> dict[str, tuple[int, int]]:
        cpu = max(1, int(-(-self.cpu_seconds // 1)))
        return {"as": (self.memory_mb << 20,) * 2, "cpu": (cpu, cpu + 1),  # type: ignore[dict-item]
                "fsize": (self.file_size_mb << 20,) * 2, "nproc": (self.max_processes,) * 2,
                "nofile": (self.open_files,) * 2, "core": (0, 0)}


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one sandboxed run.

    ``exit_code`` is the process's exit status, negative for a signal (``-9`` for SIGKILL), the way
    :mod:`subprocess` reports it. ``limit`` names the limit that stopped or broke the run, if any:
    one of ``timeout``, ``cpu``, ``memory``, ``file_size``, ``processes``, ``output``, ``disk``.
    ``wall_time`` and ``cpu_time`` are seconds (CPU time of the process and the children it
    waited for).
    """

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_time: float = 0.0
    cpu_time: float = 0.0
    limit: str | None = None

    @property
    def ok(self) -> bool:
        """Exit code 0 and no limit hit."""
        return self.exit_code == 0 and self.limit is None

    @property
    def truncated(self) -> bool:
        """Whether stdout or stderr was cut at ``max_output_bytes``."""
        return self.stdout_truncated or self.stderr_truncated

    def check(self) -> "ExecResult":
        """Return self, or raise :class:`SandboxTimeout` (timeout) or :class:`SandboxError` (other limits)."""
        if self.limit == "timeout":
            raise SandboxTimeout(f"the command ran past its wall-clock limit ({self.wall_time:.1f} s); "
                                 "raise timeout= if it needs longer")
        if self.limit is not None:
            raise SandboxError(f"the command hit the sandbox's {self.limit} limit; raise it if the work needs more")
        return self

    def describe(self) -> str:
        """A one-line account of why the run stopped, for showing to an agent (empty when it ran fine)."""
        reasons = {"timeout": "timed out (wall-clock limit)", "cpu": "exceeded the CPU time limit",
                   "memory": "exceeded the memory limit", "file_size": "exceeded the file size limit",
                   "processes": "exceeded the process limit", "output": "produced too much output (truncated)",
                   "disk": "exceeded the disk quota of the work directory"}
        if self.limit:
            return f"[sandbox: the run {reasons[self.limit]}]"
        if self.exit_code < 0:
            try:
                name = signal.Signals(-self.exit_code).name
            except ValueError:
                name = f"signal {-self.exit_code}"
            return f"[sandbox: killed by {name}]"
        return ""


@runtime_checkable
class Sandbox(Protocol):
    """An isolated place to run untrusted commands and Python code.

    Every method is a coroutine. ``run`` takes ``argv`` as a list, or a string run by ``sh -c``;
    ``run_python`` takes Python source. Both accept ``files`` (relative path -> text or bytes,
    written into the work directory first), ``stdin``, ``env`` (the only environment variables the
    code sees; the host's are never passed), and per-call limits (``timeout``, ``memory_mb``,
    ``cpu_seconds``, ``max_output_bytes``) that override the sandbox's defaults. They return an
    :class:`ExecResult` whatever the code does; they raise :class:`~agentgym.errors.SandboxError` only
    when the sandbox itself cannot run (and ``EnvironmentClosedError`` after :meth:`aclose`).

    One-shot calls get a fresh, empty work directory each. :meth:`session` returns a
    :class:`SandboxSession` whose calls share one work directory (for one episode).
    """

    async def run(self, argv: Argv, *, files: Files | None = None, stdin: str | bytes | None = None,
                  timeout: float | None = None, memory_mb: int | None = None, cpu_seconds: float | None = None,
                  max_output_bytes: int | None = None, env: Mapping[str, str] | None = None) -> ExecResult: ...

    async def run_python(self, code: str, *, files: Files | None = None, stdin: str | bytes | None = None,
                         timeout: float | None = None, memory_mb: int | None = None,
                         cpu_seconds: float | None = None, max_output_bytes: int | None = None,
                         env: Mapping[str, str] | None = None) -> ExecResult: ...

    def session(self) -> "SandboxSession": ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SandboxSession(Protocol):
    """Calls that share one work directory; ``run`` and ``run_python`` as on :class:`Sandbox`."""

    async def run(self, argv: Argv, **kwargs: Any) -> ExecResult: ...

    async def run_python(self, code: str, **kwargs: Any) -> ExecResult: ...

    async def aclose(self) -> None: ...


class SessionBase:
    """What the back ends' sessions share: ``run``/``run_python`` over the back end's ``_call``, the
    async context manager, and the closed check. Subclasses set ``_closed`` and define ``_call``,
    ``_prepare`` (which starts with :meth:`_check_open`) and ``aclose``."""

    _closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise EnvironmentClosedError("this sandbox session is closed; open a new one with sandbox.session()")

    async def _prepare(self) -> Any:
        raise NotImplementedError

    async def _call(self, kind: str, payload: Argv, **kwargs: Any) -> ExecResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        await self._prepare()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def run(self, argv: Argv, **kwargs: Any) -> ExecResult:
        """Run a command in the session (arguments as the sandbox's ``run``)."""
        return await self._call("exec", argv, **kwargs)

    async def run_python(self, code: str, **kwargs: Any) -> ExecResult:
        """Run Python source in the session (arguments as the sandbox's ``run_python``)."""
        return await self._call("python", code, **kwargs)


DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def make_request(kind: str, payload: Argv, *, files: Files | None, stdin: str | bytes | None,
                 env: Mapping[str, str] | None, limits: Limits, cwd: str = "/work") -> dict[str, Any]:
    """The JSON request the launcher reads (bytes travel as base64)."""
    req: dict[str, Any] = {"kind": kind, "cwd": cwd, "rlimits": limits.rlimits(),
                           "env": {**DEFAULT_ENV, **(dict(env) if env else {})}}
    if kind == "python":
        if not isinstance(payload, str):
            raise TypeError(f"run_python takes source code as a str, got {type(payload).__name__}")
        req["code"] = payload
    else:
        argv = ["sh", "-c", payload] if isinstance(payload, str) else [str(a) for a in payload]
        if not argv:
            raise ValueError("argv is empty; pass a command such as ['ls', '-l'] or a shell string")
        req["argv"] = argv
    if files:
        for rel in files:
            parts = [p for p in str(rel).split("/") if p not in ("", ".")]
            if str(rel).startswith("/") or ".." in parts or not parts:
                raise ValueError(f"file paths must be relative and stay in the work directory, got {rel!r}")
        req["files"] = {str(k): _b64(v) for k, v in files.items()}
    if stdin is not None:
        req["stdin"] = _b64(stdin)
    return req


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else bytes(data)).decode()


@dataclass
class OutputBuffer:
    """Collects one stream up to ``cap`` bytes, remembering that more came."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    overflow: bool = False

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.overflow = True
            chunk = chunk[:max(room, 0)]
        self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def classify(*, exit_code: int, stderr: str, timed_out: bool, overflow: bool, cpu_time: float,
             limits: Limits) -> str | None:
    """Which limit a run hit, from how it ended (signals) and what the runtime said (stderr)."""
    if timed_out:
        return "timeout"
    if overflow:
        return "output"
    if exit_code == -signal.SIGXCPU or (exit_code == -signal.SIGKILL and cpu_time >= limits.cpu_seconds - 0.05):
        return "cpu"
    if exit_code == 0:  # it finished well: a limit it met was handled (or its stderr merely names one)
        return None
    if exit_code == -signal.SIGXFSZ or "File too large" in stderr:
        return "file_size"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr or "bad_alloc" in stderr:
        return "memory"
    if ("Resource temporarily unavailable" in stderr and ("fork" in stderr or "BlockingIOError" in stderr
                                                          or "thread" in stderr)) or "can't start new thread" in stderr:
        return "processes"  # threads count against it (a thread's stack can also fail under memory_mb)
    if "No space left on device" in stderr:
        return "disk"
    return None


def dir_size(path: Path) -> int:
    """Bytes used by the files under ``path`` (symlinks not followed), however deep the tree: it is walked
    by directory descriptors, so no path is too long to count (``os.walk`` skipped those silently), and a
    tree too deep for that walk's recursion is measured by ``du``. A tree that cannot be measured counts
    as over any quota."""
    def fail(exc: OSError) -> None:
        raise exc

    total = 0
    try:
        for _, dirs, files, dirfd in os.fwalk(path, onerror=fail):
            for name in files + dirs:
                try:
                    total += os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_blocks * 512
                except FileNotFoundError:  # removed while we counted
                    pass
    except RecursionError:
        du = subprocess.run(["du", "-s", "-B1", "--", str(path)], capture_output=True, text=True)
        return int(du.stdout.split()[0]) if du.returncode == 0 and du.stdout.split() else 1 << 62
    except OSError:
        return 1 << 62
    return total


def remove_tree(path: Path, *, contents_only: bool = False) -> None:
    """Delete ``path`` (or only what it holds) however deep it goes: ``shutil.rmtree``, then ``rm -rf``
    for whatever that left (a tree deeper than its recursion)."""
    targets = list(path.iterdir()) if contents_only and path.is_dir() else [path]
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            try:
                shutil.rmtree(target, ignore_errors=True)
            except RecursionError:
                pass
            if os.path.lexists(target):
                subprocess.run(["rm", "-rf", "--", str(target)], capture_output=True)
        else:
            target.unlink(missing_ok=True)


def parse_status(line: str) -> tuple[int, float] | None:
    """``(exit_code, cpu_seconds)`` from the launcher's status line ``EXIT UTIME STIME MAXRSS``."""
    try:
        code, utime, stime, _ = line.split()
        return int(code), float(utime) + float(stime)
    except ValueError:
        return None
