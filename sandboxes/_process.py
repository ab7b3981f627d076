"""The process sandbox: bubblewrap namespaces plus rlimits, no daemon needed.

Each run is one ``bwrap`` process tree: new user, PID, network, IPC, UTS (and cgroup) namespaces,
no capabilities, no nested user namespaces; a root of its own holding ``/usr`` (read-only), a
generated ``/etc/passwd``, the interpreter's installation (read-only), a fresh read-only ``/dev``
with a size-capped ``/dev/shm``, ``/proc``, a size-capped tmpfs ``/tmp`` and the work directory
``/work`` (a size-capped tmpfs for one-shot runs; for sessions a host directory, measured while
each call runs and emptied when it passes the quota). The environment is cleared. rlimits (address space,
CPU, file size, processes, open files) are set inside the namespaces by the launcher
(``_bootstrap.py``), so the process count is per sandbox. The wall-clock timeout SIGKILLs bwrap;
``--die-with-parent`` then takes down the PID namespace and with it every process in it.

Run as root, the sandbox first drops to an unprivileged uid (``setpriv``): root's processes are
exempt from RLIMIT_NPROC, and nothing in the sandbox should run as the host's root. Because the
interpreter may live where that uid cannot look (``/root/.pyenv``), a privileged outer bwrap
first binds it under a private ``/run``.
"""

from __future__ import annotations

import asyncio
import fcntl
import marshal
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from agentgym.errors import EnvironmentClosedError, SandboxError

from ._base import (BOOTSTRAP, Argv, ExecResult, Files, Limits, OutputBuffer, SessionBase, classify, dir_size,
                    make_request, parse_status, remove_tree)

_MISSING = ("bubblewrap (bwrap) is not installed or not on PATH: install the Debian package 'bubblewrap' "
            "(apt-get install -y bubblewrap), pass bwrap='/path/to/bwrap', or use the Docker back end "
            "(agentgym.sandboxes.DockerSandbox, or make('docker'))")
_NO_NAMESPACES = ("bubblewrap cannot create the sandbox's namespaces ({detail}). Allow unprivileged user "
                  "namespaces (sysctl -w kernel.unprivileged_userns_clone=1 and user.max_user_namespaces=15000; "
                  "in a container, run it with --security-opt seccomp=unconfined --security-opt apparmor=unconfined "
                  "or --privileged), or use the Docker back end (agentgym.sandboxes.DockerSandbox, or make('docker'))")
_PRIVATE_PYTHON = "/run/agentgym-python"
# The launcher's source comes on fd 5, so process listings show this line, not 150 lines of code.
_STUB = "import os\nb = b''\nwhile True:\n    c = os.read(5, 65536)\n    if not c: break\n    b += c\nos.close(5)\nexec(compile(b, '<agentgym-launcher>', 'exec'))"
_SOURCE = BOOTSTRAP.encode()
_probed: dict[tuple, str | None] = {}


def _high_fd(fd: int) -> int:
    """Move ``fd`` to 10 or above so posix_spawn's dup2 actions onto 0-4 never clobber each other."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class _Launch:
    """One started bwrap tree whose launcher waits for its request (the warm pool's unit)."""

    def __init__(self, argv: list[str], workdir: Path | None):
        self.workdir = workdir
        out_r, out_w = (_high_fd(fd) for fd in os.pipe())
        err_r, err_w = (_high_fd(fd) for fd in os.pipe())
        req_r, req_w = (_high_fd(fd) for fd in os.pipe())
        st_r, st_w = (_high_fd(fd) for fd in os.pipe())
        src_r, src_w = (_high_fd(fd) for fd in os.pipe())
        os.write(src_w, _SOURCE)  # smaller than a pipe's buffer: never blocks
        os.close(src_w)
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
                   (os.POSIX_SPAWN_DUP2, req_r, 3), (os.POSIX_SPAWN_DUP2, st_w, 4), (os.POSIX_SPAWN_DUP2, src_r, 5)]
        try:
            self.pid = os.posix_spawn(argv[0], argv, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                      file_actions=actions, setsid=True)
        except OSError:
            for fd in (out_r, out_w, err_r, err_w, req_r, req_w, st_r, st_w, src_r):
                os.close(fd)
            raise
        for fd in (out_w, err_w, req_r, st_w, src_r):
            os.close(fd)
        self.fds = {"stdout": out_r, "stderr": err_r, "status": st_r}
        self.req_w: int | None = req_w
        self.pidfd = os.pidfd_open(self.pid)
        self.wait_status: int | None = None
        self.rusage: Any = None

    def reap(self, block: bool) -> bool:
        """Collect the exit status if the tree has ended (or wait for it); True once reaped."""
        if self.wait_status is not None:
            return True
        try:
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.wait_status = 0
            return True
        if pid == 0:
            return False
        self.wait_status, self.rusage = status, usage
        return True

    def kill(self) -> None:
        """SIGKILL the launch's whole process group (bwrap is spawned as its leader).

        Killing the outer bwrap alone is not enough: killed just after its fork, before its child
        has set ``--die-with-parent``, the child lives on as an orphan.
        """
        if self.wait_status is None:  # not reaped yet, so the group id cannot have been reused
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _close_fds(self, keep_stdout: bool = False) -> None:
        for name, fd in list(self.fds.items()):
            if keep_stdout and name == "stdout":
                continue
            try:
                os.close(fd)
            except OSError:
                pass
            del self.fds[name]
        if self.req_w is not None:
            os.close(self.req_w)
            self.req_w = None

    def dispose(self, pending: set["_Launch"]) -> None:
        """Kill the tree now and let it end without waiting here.

        The tree is gone when its outer process is reaped and its stdout reaches end-of-file (every
        bwrap process holds stdout until it dies; when the inner one dies its PID namespace goes
        with it). Until then the launch stays in ``pending``, which the sandbox's ``aclose``
        awaits, so no process outlives the sandbox.
        """
        self.kill()
        self._close_fds(keep_stdout=True)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.close()
            return
        pending.add(self)
        self.gone = loop.create_future()
        out = self.fds.get("stdout")

        def check() -> None:
            if "stdout" not in self.fds and self.wait_status is not None and not self.gone.done():
                self._close_pidfd()
                pending.discard(self)
                self.gone.set_result(None)

        def on_output() -> None:
            while True:
                try:
                    chunk = os.read(out, 1 << 16)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    loop.remove_reader(out)
                    self._close_fds()
                    check()
                    return

        def on_exit() -> None:
            loop.remove_reader(self.pidfd)
            self.reap(block=True)
            check()

        if out is not None:
            os.set_blocking(out, False)
            loop.add_reader(out, on_output)
        if self.pidfd is not None:
            if self.reap(block=False):
                check()
            else:
                loop.add_reader(self.pidfd, on_exit)
        check()

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.pidfd)
            except RuntimeError:
                pass
            os.close(self.pidfd)
            self.pidfd = None  # type: ignore[assignment]

    def close(self) -> None:
        """Kill the tree and wait until it is gone (synchronous; bounded by a few seconds)."""
        self.kill()
        self._close_fds(keep_stdout=True)
        self.reap(block=True)
        out = self.fds.get("stdout")
        if out is not None:
            try:
                loop = asyncio.get_running_loop()
                loop.remove_reader(out)
            except RuntimeError:
                pass
            os.set_blocking(out, True)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                ready, _, _ = select.select([out], [], [], max(deadline - time.monotonic(), 0))
                if not ready or not os.read(out, 1 << 16):
                    break
        self._close_fds()
        self._close_pidfd()


async def settle(pending: set[_Launch], timeout: float = 10.0) -> None:
    """Wait until every disposed launch in ``pending`` is gone; force the stragglers."""
    waiting = [launch.gone for launch in list(pending) if getattr(launch, "gone", None) is not None]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
    for launch in list(pending):
        launch.close()
        pending.discard(launch)


class ProcessSandbox:
    """The default sandbox: bubblewrap namespaces and rlimits around each run (see the module doc).

    Keyword arguments set the default :class:`~agentgym.sandboxes.Limits` (``timeout``,
    ``memory_mb``, ``cpu_seconds``, ``max_output_bytes``, ``file_size_mb``, ``max_processes``,
    ``disk_mb``, ``open_files``). ``warm=N`` keeps N launchers started ahead (the warm pool), so a
    call does not wait for bwrap and the interpreter to start; sessions then also start their next
    launcher ahead. ``python`` is the interpreter run inside (default: this process's base
    interpreter, its installation bound read-only); ``uid``/``gid`` the host ids the sandbox runs
    as when started by root; ``tmp_root`` where work directories live.

    Use as ``async with ProcessSandbox() as sb:`` or call :meth:`aclose`; both kill every process,
    and remove every directory, the sandbox made. Start-up checks that bubblewrap works and raises
    :class:`~agentgym.errors.SandboxError` saying how to fix it if not.
    """

    def __init__(self, *, warm: int = 0, python: str | None = None, bwrap: str = "bwrap", uid: int = 65534,
                 gid: int = 65534, tmp_root: str | None = None, **limits: Any):
        self.limits = Limits(**limits)
        if warm < 0:
            raise ValueError(f"warm must be >= 0 (the number of launchers kept ready), got {warm}")
        self.warm = warm
        self._bwrap = shutil.which(bwrap) if os.sep not in bwrap else (bwrap if os.access(bwrap, os.X_OK) else None)
        self._bwrap_name = bwrap
        self._root = os.geteuid() == 0
        self._setpriv = shutil.which("setpriv") if self._root else None
        self.uid, self.gid = (uid, gid) if self._root else (os.getuid(), os.getgid())
        base = Path(os.path.realpath(sys.base_prefix))
        exe = getattr(sys, "_base_executable", None) or str(base / "bin" / "python3")
        self.python = os.path.realpath(python or exe)
        self._prefix = None if self.python.startswith("/usr/") else str(base if self.python.startswith(str(base))
                                                                          else Path(self.python).parent.parent)
        self._tmp_root = tmp_root
        self._dir: Path | None = None
        self._idle: list[_Launch] = []
        self._sessions: set[ProcessSession] = set()
        self._pending: set[_Launch] = set()
        self._running: set[_Launch] = set()  # launches serving a call right now
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False

    # ----- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> "ProcessSandbox":
        """Check that bubblewrap works here and fill the warm pool (called by ``async with``)."""
        self._check_open()
        async with self._start_lock:
            if not self._started:
                await self._start()
        return self

    async def _start(self) -> None:
        if self._bwrap is None:
            raise SandboxError(_MISSING)
        if self._root and self._setpriv is None:
            raise SandboxError("running as root needs setpriv (Debian package util-linux) to drop to an "
                               "unprivileged uid; install it or run as a normal user")
        self._dir = Path(tempfile.mkdtemp(prefix="agentgym-sandbox-", dir=self._tmp_root))
        # removes the directory once: in aclose, when the sandbox is collected unclosed, or at exit
        self._remove_dir = weakref.finalize(self, remove_tree, self._dir)
        os.chmod(self._dir, 0o711)
        etc = self._dir / "etc"
        etc.mkdir()
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/work:/bin/sh\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        (etc / "group").write_text("root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n")
        (etc / "hosts").write_text("127.0.0.1 localhost sandbox\n::1 localhost\n")
        for p in (etc, *etc.iterdir()):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        self._started = True
        key = (self._bwrap, self.python, self.uid, self._root)
        if key not in _probed:
            try:
                result = await self._run(self._new_launch(None), "python", "print('ok')", files=None, stdin=None,
                                         env=None, limits=self.limits.override(timeout=30))
            except OSError as exc:
                _probed[key] = str(exc)
            else:
                _probed[key] = None if result.stdout.strip() == "ok" else (result.stderr.strip() or
                                                                            f"exit code {result.exit_code}")
        if _probed[key] is not None:
            detail = _probed[key]
            await self.aclose()
            raise SandboxError(_NO_NAMESPACES.format(detail=detail))
        self._fill_pool()

    async def aclose(self) -> None:
        """Kill every process and remove every directory this sandbox made; idempotent."""
        if self._closed:
            return
        self._closed = True
        # kill every process before the first await: a cancelled close must not leave any running
        for launch in self._idle:
            launch.dispose(self._pending)
        self._idle.clear()
        for session in self._sessions:
            session._dispose_next()
        for launch in self._running:
            launch.kill()  # its call sees the tree end, returns and disposes it (its fds are the call's)
        try:
            for session in list(self._sessions):
                await session.aclose()
            await settle(self._pending)
        finally:  # even when the close itself is cancelled (a timeout, Ctrl-C): the launchers are killed by now
            if self._dir is not None:
                self._remove_dir()
                self._dir = None

    async def __aenter__(self) -> "ProcessSandbox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EnvironmentClosedError("this ProcessSandbox is closed; create a new one")

    # ----- running ------------------------------------------------------------------------------
    async def run(self, argv: Argv, *, files: Files | None = None, stdin: str | bytes | None = None,
                  timeout: float | None = None, memory_mb: int | None = None, cpu_seconds: float | None = None,
                  max_output_bytes: int | None = None, env: Mapping[str, str] | None = None) -> ExecResult:
        """Run a command (a list, or a string for ``sh -c``) in a fresh work directory."""
        await self.start()
        limits = self.limits.override(timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                                      max_output_bytes=max_output_bytes)
        return await self._run(self._take(), "exec", argv, files=files, stdin=stdin, env=env, limits=limits)

    async def run_python(self, code: str, *, files: Files | None = None, stdin: str | bytes | None = None,
                         timeout: float | None = None, memory_mb: int | None = None,
                         cpu_seconds: float | None = None, max_output_bytes: int | None = None,
                         env: Mapping[str, str] | None = None) -> ExecResult:
        """Run Python source (as ``python3 -I -S``, with ``exit()``) in a fresh work directory."""
        await self.start()
        limits = self.limits.override(timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                                      max_output_bytes=max_output_bytes)
        return await self._run(self._take(), "python", code, files=files, stdin=stdin, env=env, limits=limits)

    def session(self) -> "ProcessSession":
        """A :class:`ProcessSession`: calls that share one work directory (use ``async with``)."""
        self._check_open()
        session = ProcessSession(self)
        self._sessions.add(session)
        return session

    # ----- internals ----------------------------------------------------------------------------
    def _take(self) -> _Launch:
        while self._idle:
            launch = self._idle.pop()
            if not launch.reap(block=False):
                self._fill_pool()
                return launch
            launch.dispose(self._pending)
        return self._new_launch(None)

    def _fill_pool(self) -> None:
        while len(self._idle) < self.warm and not self._closed:
            self._idle.append(self._new_launch(None))

    def _argv(self, workdir: Path | None) -> list[str]:
        assert self._dir is not None and self._bwrap is not None
        lim = self.limits
        argv: list[str] = []
        prefix_src = self._prefix
        if self._root:
            # Its own PID namespace makes SIGKILL of this outer bwrap take the whole tree down
            # (the inner bwrap, whose uid differs, would not follow it through --die-with-parent).
            argv += [self._bwrap, "--unshare-pid", "--dev-bind", "/", "/", "--die-with-parent"]
            if self._prefix:
                argv += ["--tmpfs", "/run", "--ro-bind", self._prefix, _PRIVATE_PYTHON]
                prefix_src = _PRIVATE_PYTHON
            argv += ["--", self._setpriv or "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                     "--clear-groups", "--no-new-privs"]
        argv += [self._bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
                 "--uid", "1000", "--gid", "1000", "--hostname", "sandbox", "--clearenv", "--cap-drop", "ALL",
                 "--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / name
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                argv += ["--ro-bind", str(path), str(path)]
        for path in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime"):
            argv += ["--ro-bind-try", path, path]
        for name in ("passwd", "group", "hosts"):
            argv += ["--ro-bind", str(self._dir / "etc" / name), f"/etc/{name}"]
        if self._prefix and prefix_src:
            argv += ["--ro-bind", prefix_src, self._prefix]
        # bwrap's /dev is a tmpfs of half the host's memory: /dev/shm gets the disk quota, the rest is read-only
        argv += ["--dev", "/dev", "--size", str(lim.disk_mb << 20), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                 "--proc", "/proc", "--size", str(lim.disk_mb << 20), "--tmpfs", "/tmp"]
        if workdir is None:
            argv += ["--size", str(lim.disk_mb << 20), "--tmpfs", "/work"]
        else:
            argv += ["--bind", str(workdir), "/work"]
        argv += ["--remount-ro", "/", "--chdir", "/work", "--", self.python, "-I", "-S", "-c", _STUB, "fd", "3", "4"]
        return argv

    def _new_launch(self, workdir: Path | None) -> _Launch:
        return _Launch(self._argv(workdir), workdir)

    async def _run(self, launch: _Launch, kind: str, payload: Argv, *, files: Files | None,
                   stdin: str | bytes | None, env: Mapping[str, str] | None, limits: Limits) -> ExecResult:
        self._running.add(launch)
        try:
            request = make_request(kind, payload, files=files, stdin=stdin, env=env, limits=limits)
            return await _execute(launch, marshal.dumps(request), limits)
        finally:
            self._running.discard(launch)
            launch.dispose(self._pending)


class ProcessSession(SessionBase):
    """Calls to one :class:`ProcessSandbox` that share a work directory, for one episode.

    ``run`` and ``run_python`` take the same arguments as the sandbox's. Calls run one at a time.
    After each call the work directory's size is checked against ``disk_mb``; past it, the
    directory is emptied and the result reports ``limit == "disk"``. :meth:`aclose` kills what
    the session started and removes its directory.
    """

    def __init__(self, sandbox: ProcessSandbox):
        self._sandbox = sandbox
        self._lock = asyncio.Lock()
        self._workdir: Path | None = None
        self._next: _Launch | None = None
        self._closed = False

    @property
    def workdir(self) -> Path | None:
        """The host directory mounted as ``/work`` (None before the first call)."""
        return self._workdir

    async def _prepare(self) -> None:
        self._check_open()
        await self._sandbox.start()
        if self._workdir is None:
            assert self._sandbox._dir is not None
            self._workdir = Path(tempfile.mkdtemp(prefix="session-", dir=self._sandbox._dir))
            os.chmod(self._workdir, 0o700)
            if self._sandbox._root:
                os.chown(self._workdir, self._sandbox.uid, self._sandbox.gid)
            if self._sandbox.warm:
                self._next = self._sandbox._new_launch(self._workdir)

    async def _call(self, kind: str, payload: Argv, *, files: Files | None = None, stdin: str | bytes | None = None,
                    timeout: float | None = None, memory_mb: int | None = None, cpu_seconds: float | None = None,
                    max_output_bytes: int | None = None, env: Mapping[str, str] | None = None) -> ExecResult:
        async with self._lock:
            await self._prepare()
            assert self._workdir is not None
            sb = self._sandbox
            limits = sb.limits.override(timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                                        max_output_bytes=max_output_bytes)
            launch, self._next = self._next, None
            if launch is None or launch.reap(block=False):
                if launch is not None:
                    launch.dispose(sb._pending)
                launch = sb._new_launch(self._workdir)
            result = await sb._run(launch, kind, payload, files=files, stdin=stdin, env=env, limits=limits)
            if dir_size(self._workdir) > limits.disk_mb << 20:
                remove_tree(self._workdir, contents_only=True)
                note = f"\n[sandbox: the work directory passed {limits.disk_mb} MB and was emptied]\n"
                result = replace(result, stderr=result.stderr + note, limit=result.limit or "disk")
            if sb.warm and not self._closed and not sb._closed:
                self._next = sb._new_launch(self._workdir)
            return result

    def _dispose_next(self) -> None:
        if self._next is not None:
            self._next.dispose(self._sandbox._pending)
            self._next = None

    async def aclose(self) -> None:
        """Kill the session's ready launcher and remove its work directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._dispose_next()
        try:
            async with self._lock:  # a running call finishes first (it starts no new launcher once closed)
                await settle(self._sandbox._pending)
        finally:
            if self._workdir is not None:
                remove_tree(self._workdir)
            self._sandbox._sessions.discard(self)


async def _execute(launch: _Launch, request: bytes, limits: Limits) -> ExecResult:
    """Send the request to a started launcher and collect its output under the limits.

    The run is over when the launcher reports its status line (the child has exited and its
    leftovers are killed; all output is already in the pipes), when the tree ends without one, or,
    for a session (a host directory as ``/work``, no tmpfs cap), when that directory passes the disk
    quota: it is measured every ``_DISK_POLL`` seconds while the run goes on. Tearing the namespaces
    down is left to :meth:`_Launch.dispose`, off the caller's path.
    """
    loop = asyncio.get_running_loop()
    buffers = {"stdout": OutputBuffer(limits.max_output_bytes), "stderr": OutputBuffer(limits.max_output_bytes),
               "status": OutputBuffer(1 << 16)}
    eof = {name: loop.create_future() for name in buffers}
    exited, reported, overflow = loop.create_future(), loop.create_future(), loop.create_future()
    watched: dict[int, str] = {}

    def on_readable(name: str, fd: int) -> None:
        while fd in watched:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(fd)
                del watched[fd]
                eof[name].done() or eof[name].set_result(None)
                return
            buffers[name].feed(chunk)
            if name == "status":
                if b"\n" in buffers["status"].data and not reported.done():
                    reported.set_result(None)
            elif buffers[name].overflow and not overflow.done():
                overflow.set_result(None)

    def on_exit() -> None:
        loop.remove_reader(launch.pidfd)
        watched.pop(launch.pidfd, None)
        exited.done() or exited.set_result(None)

    for name, fd in launch.fds.items():
        os.set_blocking(fd, False)
        loop.add_reader(fd, on_readable, name, fd)
        watched[fd] = name
    loop.add_reader(launch.pidfd, on_exit)
    watched[launch.pidfd] = "exit"
    start = time.perf_counter()
    writer = asyncio.ensure_future(_write_all(loop, launch, request))
    # a session's /work is a host directory, no tmpfs cap: watch its size while the run goes on
    over_disk = (asyncio.ensure_future(_watch_disk(launch.workdir, limits.disk_mb << 20))
                 if launch.workdir is not None else None)
    ended = loop.create_future()  # the tree ended without a status line (the launcher died)
    parts = (exited, eof["stdout"], eof["stderr"])
    for part in parts:
        part.add_done_callback(lambda _: all(p.done() for p in parts) and not ended.done() and ended.set_result(None))
    try:
        done, _ = await asyncio.wait({reported, ended, overflow, *([over_disk] if over_disk else [])},
                                     timeout=limits.timeout, return_when=asyncio.FIRST_COMPLETED)
        wall = time.perf_counter() - start
        timed_out = not done
        for fd, name in list(watched.items()):  # what is already in the pipes belongs to the run
            if name in ("stdout", "stderr"):
                on_readable(name, fd)
    finally:
        writer.cancel()
        ended.cancel()
        if over_disk is not None:
            over_disk.cancel()
        for fd in list(watched):
            loop.remove_reader(fd)
    disk_full = (over_disk is not None and over_disk.done() and not over_disk.cancelled()
                 and over_disk.exception() is None)
    status = parse_status(bytes(buffers["status"].data).split(b"\n", 1)[0].decode()) if reported.done() else None
    stopped = timed_out or overflow.done() or disk_full  # we end the tree (dispose), it did not end itself
    if status is not None:
        exit_code, cpu = status
    else:
        if launch.reap(block=not stopped) and not stopped:
            code = os.waitstatus_to_exitcode(launch.wait_status or 0)
            exit_code = -(code - 128) if 128 < code < 160 else code
        else:
            exit_code = -signal.SIGKILL
        cpu = (launch.rusage.ru_utime + launch.rusage.ru_stime) if launch.rusage else 0.0
    out, err = buffers["stdout"], buffers["stderr"]
    stderr = err.text()
    limit = "disk" if disk_full and status is None else classify(
        exit_code=exit_code, stderr=stderr, timed_out=timed_out, overflow=overflow.done(), cpu_time=cpu, limits=limits)
    return ExecResult(exit_code=exit_code, stdout=out.text(), stderr=stderr, stdout_truncated=out.overflow,
                      stderr_truncated=err.overflow, wall_time=wall, cpu_time=cpu, limit=limit)


_DISK_POLL = 0.1


async def _watch_disk(workdir: Path, quota: int) -> None:
    """Return once ``workdir`` holds more than ``quota`` bytes."""
    while await asyncio.to_thread(dir_size, workdir) <= quota:
        await asyncio.sleep(_DISK_POLL)


async def _write_all(loop: asyncio.AbstractEventLoop, launch: _Launch, data: bytes) -> None:
    fd = launch.req_w
    assert fd is not None
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
    except (BrokenPipeError, OSError):
        pass
    finally:
        if launch.req_w == fd:  # close() may have closed it (and the number been reused) already
            os.close(fd)
            launch.req_w = None
