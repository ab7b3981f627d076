"""The Docker sandbox: the same protocol on a container per session, through any Docker API.

Each session (and each one-shot run) gets its own container: no network, read-only root, a
size-capped tmpfs ``/work``, ``/tmp`` and ``/dev/shm``, all capabilities dropped,
``no-new-privileges``, an unprivileged user, cgroup memory and process limits, and a PID 1 that only
reaps the processes it adopts.
Every call is a ``docker exec`` of the same launcher the process sandbox uses (``_bootstrap.py``,
request on the exec's stdin), which applies the per-call rlimits, runs the code, kills what it left
behind and reports its status on the last stderr line. A timeout, or a launcher that died before
reporting, kills every process of the sandbox user but PID 1.

Works against Docker or podman (``podman system service``), found by ``base_url`` or
``DOCKER_HOST``. The image needs only ``python3`` (3.7+) and coreutils.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import replace
from typing import Any, Mapping

from agentgym.errors import EnvironmentClosedError, SandboxError

from ._base import (BOOTSTRAP, Argv, ExecResult, Files, Limits, OutputBuffer, SessionBase, classify, make_request,
                    parse_status)

DEFAULT_IMAGE = "localhost/agentgym-python:bookworm"
_USER = "65534:65534"
_REAPER = ("import os, time\n"  # the container's PID 1: reaps every child it adopts, else idles
           "while True:\n"
           "    try:\n"
           "        os.wait()\n"
           "    except ChildProcessError:\n"
           "        time.sleep(0.2)\n")
# SIGKILL every process but PID 1 and itself, until none is left (a fork bomb forks while it is killed), for
# at most about 2 s: the next call then finds the container's process slots free
_KILL_ALL = ("import os, signal, time\n"
             "me = os.getpid()\n"
             "for _ in range(100):\n"
             "    try:\n"
             "        os.kill(-1, signal.SIGKILL)\n"
             "    except OSError:\n"
             "        pass\n"
             "    if not [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, me)]:\n"
             "        break\n"
             "    time.sleep(0.02)\n")


class DockerSandbox:
    """A sandbox whose sessions are Docker (or podman) containers.

    Keyword arguments: default limits as for :class:`~agentgym.sandboxes.ProcessSandbox`;
    ``image`` (needs ``python3``; default ``localhost/agentgym-python:bookworm``, see the tests'
    fixture for building it without a registry), ``base_url`` (a Docker API endpoint such as
    ``unix:///run/podman/podman.sock``; default ``DOCKER_HOST`` or the local socket), ``python``
    (the interpreter inside the image), ``warm=N`` (containers created ahead of time),
    ``runtime`` (an OCI runtime name such as ``runc``).
    """

    def __init__(self, *, image: str = DEFAULT_IMAGE, base_url: str | None = None, python: str = "python3",
                 warm: int = 0, runtime: str | None = None, **limits: Any):
        self.limits = Limits(**limits)
        if warm < 0:
            raise ValueError(f"warm must be >= 0 (the number of containers kept ready), got {warm}")
        self.image, self.base_url, self.python, self.warm, self.runtime = image, base_url, python, warm, runtime
        self._client: Any = None
        self._idle: list[str] = []
        self._tasks: set[asyncio.Task] = set()
        self._containers: set[str] = set()
        self._sessions: set[DockerSession] = set()
        self._start_lock = asyncio.Lock()
        self._closed = False
        # every container is labelled with this sandbox's owner token, so aclose can sweep by label
        # what no bookkeeping saw (a create that failed after the container existed)
        self._owner = secrets.token_hex(8)
        # makes "closed?" and "record the new container" one step for creations still in a thread
        self._guard = threading.Lock()

    # ----- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> "DockerSandbox":
        """Connect, check the image and fill the warm pool (called by ``async with``)."""
        if self._closed:
            raise EnvironmentClosedError("this DockerSandbox is closed; create a new one")
        async with self._start_lock:
            if self._client is None:
                client = await asyncio.to_thread(self._connect)
                if self._closed:  # closed while connecting
                    client.close()
                    raise EnvironmentClosedError("this DockerSandbox was closed while it was starting")
                self._client = client
                self._fill_pool()
        return self

    def _connect(self) -> Any:
        try:
            import docker
        except ImportError:
            raise SandboxError("DockerSandbox needs the docker SDK: pip install 'agentgym[docker]'") from None
        where = self.base_url or "DOCKER_HOST or the default socket"
        try:
            client = docker.DockerClient(base_url=self.base_url) if self.base_url else docker.from_env()
            client.ping()
        except Exception as exc:  # noqa: BLE001 - the SDK raises many kinds here
            raise SandboxError(f"no Docker API at {where} ({exc}). Start Docker, or serve podman's Docker API with "
                               "`podman system service --time=0 unix:///path/podman.sock` and pass "
                               "base_url='unix:///path/podman.sock'; or use ProcessSandbox (bubblewrap)") from None
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            client.close()
            raise SandboxError(f"image {self.image!r} is not present at {where}: build one with python3, e.g. "
                               "`debootstrap --variant=minbase --include=python3 bookworm DIR && "
                               f"tar -C DIR -c . | podman import - {self.image}`, or pass image=") from None
        return client

    async def aclose(self) -> None:
        """Remove every container this sandbox made; idempotent."""
        with self._guard:  # a creation that finishes from now on removes its own container
            if self._closed:
                return
            self._closed = True
        for session in list(self._sessions):
            await session.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await asyncio.gather(*(asyncio.to_thread(self._remove, cid) for cid in list(self._containers)))
            await asyncio.to_thread(self._sweep)
            self._client.close()
        self._idle.clear()

    async def __aenter__(self) -> "DockerSandbox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- containers ---------------------------------------------------------------------------
    def _create(self) -> str:
        import docker

        lim = self.limits
        options: dict[str, Any] = dict(
            detach=True, network_mode="none", user=_USER, read_only=True, working_dir="/work", hostname="sandbox",
            tmpfs={"/work": f"size={lim.disk_mb}m,mode=1777", "/tmp": f"size={lim.disk_mb}m,mode=1777"},
            shm_size=f"{lim.disk_mb}m",
            mem_limit=f"{max(2 * lim.memory_mb, 256)}m", memswap_limit=f"{max(2 * lim.memory_mb, 256)}m",
            pids_limit=lim.max_processes + 16, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
                     docker.types.Ulimit(name="nproc", soft=4096, hard=4096)],
            environment={}, labels={"agentgym.sandbox": "1", "agentgym.sandbox.owner": self._owner},
            stop_signal="SIGKILL")
        if self.runtime:
            options["runtime"] = self.runtime
        # PID 1 reaps what a call leaves behind when its processes are killed: zombies would keep their slots
        # of the process limit, and a session whose limit is full cannot start its next call
        container = self._client.containers.run(self.image, [self.python, "-I", "-S", "-c", _REAPER], **options)
        with self._guard:
            closed = self._closed
            if not closed:
                self._containers.add(container.id)
        if closed:  # aclose ran while this thread was creating: nobody else will remove it
            self._remove(container.id)
            raise EnvironmentClosedError("this DockerSandbox was closed while a container was being created")
        return container.id

    def _remove(self, cid: str) -> None:
        try:
            self._client.api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        self._containers.discard(cid)

    def _sweep(self) -> None:
        """Remove any container still carrying this sandbox's owner label."""
        try:
            left = self._client.containers.list(all=True, filters={"label": f"agentgym.sandbox.owner={self._owner}"})
        except Exception:  # noqa: BLE001 - best effort: the API may be gone at shutdown
            return
        for container in left:
            self._remove(container.id)

    def _fill_pool(self) -> None:
        if self._closed:
            return
        missing = self.warm - len(self._idle) - sum(1 for t in self._tasks if t.get_name() == "warm")
        for _ in range(max(missing, 0)):
            self._spawn(self._warm_one(), "warm")

    async def _warm_one(self) -> None:
        try:
            self._idle.append(await asyncio.to_thread(self._create))
        except EnvironmentClosedError:
            pass  # closed meanwhile: _create removed the container

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _take(self) -> str:
        await self.start()
        if self._idle:
            cid = self._idle.pop()
            self._fill_pool()
            return cid
        self._fill_pool()
        return await asyncio.to_thread(self._create)

    def _release(self, cid: str) -> None:
        if not self._closed:  # once closed, aclose removes every container this sandbox made
            self._spawn(asyncio.to_thread(self._remove, cid), "remove")

    # ----- running ------------------------------------------------------------------------------
    async def run(self, argv: Argv, *, files: Files | None = None, stdin: str | bytes | None = None,
                  timeout: float | None = None, memory_mb: int | None = None, cpu_seconds: float | None = None,
                  max_output_bytes: int | None = None, env: Mapping[str, str] | None = None) -> ExecResult:
        """Run a command (a list, or a string for ``sh -c``) in a fresh container."""
        limits = self.limits.override(timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                                      max_output_bytes=max_output_bytes)
        request = make_request("exec", argv, files=files, stdin=stdin, env=env, limits=limits)
        cid = await self._take()
        try:
            return await self._exec(cid, request, limits)
        finally:
            self._release(cid)

    async def run_python(self, code: str, *, files: Files | None = None, stdin: str | bytes | None = None,
                         timeout: float | None = None, memory_mb: int | None = None,
                         cpu_seconds: float | None = None, max_output_bytes: int | None = None,
                         env: Mapping[str, str] | None = None) -> ExecResult:
        """Run Python source in a fresh container."""
        limits = self.limits.override(timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                                      max_output_bytes=max_output_bytes)
        request = make_request("python", code, files=files, stdin=stdin, env=env, limits=limits)
        cid = await self._take()
        try:
            return await self._exec(cid, request, limits)
        finally:
            self._release(cid)

    def session(self) -> "DockerSession":
        """A :class:`DockerSession`: calls in one container that share ``/work``."""
        if self._closed:
            raise EnvironmentClosedError("this DockerSandbox is closed; create a new one")
        session = DockerSession(self)
        self._sessions.add(session)
        return session

    async def _exec(self, cid: str, request: dict[str, Any], limits: Limits) -> ExecResult:
        """Run ``request``; a call the runtime could not start (the processes a killed call left are still
        being reaped and hold every process slot) is tried again, and then reported as the process limit."""
        for attempt in range(4):
            result = await self._exec_once(cid, request, limits)
            if not _not_started(result):
                return result
            if attempt < 3:
                await asyncio.sleep(0.1 * 2 ** attempt)
        return replace(result, limit="processes")

    async def _exec_once(self, cid: str, request: dict[str, Any], limits: Limits) -> ExecResult:
        # Processes in containers share the host uid, so RLIMIT_NPROC would count other
        # containers' processes; the container's pids cgroup limits the count instead.
        request["rlimits"].pop("nproc", None)
        marker = f"agentgym-status-{secrets.token_hex(8)}:"
        request["marker"] = marker
        # on the exec's stdin, not in its argv: any process in the container can read /proc/<pid>/cmdline
        payload = json.dumps(request).encode()
        api = self._client.api
        exec_id = (await asyncio.to_thread(api.exec_create, cid, [self.python, "-I", "-S", "-c", BOOTSTRAP, "stdin"],
                                           user=_USER, workdir="/work", stdin=True))["Id"]
        out = OutputBuffer(limits.max_output_bytes)
        err = OutputBuffer(limits.max_output_bytes + 1024)  # room for the status line
        tail = bytearray()
        stop = {"flag": False}

        def pump() -> None:
            nonlocal tail
            from docker.utils.socket import STDOUT, frames_iter

            sock = api.exec_start(exec_id, socket=True)
            try:
                try:
                    getattr(sock, "_sock", sock).sendall(b"%d\n%s" % (len(payload), payload))  # no half-close needed
                except OSError as exc:
                    raise SandboxError(f"cannot send the request to the container: {exc}") from exc
                for stream, data in frames_iter(sock, tty=False):
                    if stream == STDOUT:
                        out.feed(data)
                    else:
                        err.feed(data)
                        tail = (tail + data)[-4096:]
                    if out.overflow or len(err.data) > limits.max_output_bytes + 1024 or stop["flag"]:
                        return
            finally:
                sock.close()

        start = time.perf_counter()
        pumping = asyncio.ensure_future(asyncio.to_thread(pump))
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(pumping), limits.timeout)
        except asyncio.TimeoutError:
            timed_out = True
        wall = time.perf_counter() - start
        overflow = out.overflow or err.overflow
        if timed_out or overflow:
            stop["flag"] = True
            await asyncio.to_thread(self._kill_all, cid)
            try:
                await asyncio.wait_for(asyncio.shield(pumping), 10)
            except asyncio.TimeoutError:
                pass
        text = bytes(tail).decode("utf-8", "replace")
        at = text.rfind(marker)
        status = parse_status(text[at + len(marker):].split("\n", 1)[0]) if at >= 0 else None
        if status is None and not (timed_out or overflow):  # the launcher died before its kill(-1): finish its job
            await asyncio.to_thread(self._kill_all, cid)
        stderr_bytes = bytes(err.data)
        cut = stderr_bytes.rfind(b"\n" + marker.encode())
        if cut >= 0:
            stderr_bytes = stderr_bytes[:cut]
        err_truncated = len(stderr_bytes) > limits.max_output_bytes or (err.overflow and cut < 0)
        stderr = stderr_bytes[:limits.max_output_bytes].decode("utf-8", "replace")
        if status is not None and not timed_out:
            exit_code, cpu = status
        else:
            inspected = await asyncio.to_thread(api.exec_inspect, exec_id)
            code = inspected.get("ExitCode")
            exit_code = -9 if timed_out or overflow or code is None else (-(code - 128) if 128 < code < 160 else code)
            cpu = 0.0
        limit = classify(exit_code=exit_code, stderr=stderr, timed_out=timed_out, overflow=overflow and not timed_out,
                         cpu_time=cpu, limits=limits)
        return ExecResult(exit_code=exit_code, stdout=out.text(), stderr=stderr, stdout_truncated=out.overflow,
                          stderr_truncated=err_truncated, wall_time=wall, cpu_time=cpu, limit=limit)

    def _kill_all(self, cid: str) -> None:
        """SIGKILL every process of the sandbox user except PID 1 (the killer itself is spared too)."""
        import docker

        for attempt in range(3):  # the killer needs a process slot itself: a full container frees some soon
            try:
                ran = self._client.containers.get(cid).exec_run([self.python, "-I", "-S", "-c", _KILL_ALL], user=_USER)
                if ran.exit_code not in (125, 126):  # podman's and Docker's "could not start it"
                    return
            except docker.errors.NotFound:  # a container that is gone has nothing left to kill
                return
            except Exception:  # noqa: BLE001 - the API refused the exec (no slot for it): try again
                pass
            time.sleep(0.1 * (attempt + 1))


class DockerSession(SessionBase):
    """Calls in one container that share ``/work``; ``run``/``run_python`` as on the sandbox."""

    def __init__(self, sandbox: DockerSandbox):
        self._sandbox = sandbox
        self._cid: str | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def _prepare(self) -> str:
        self._check_open()
        if self._cid is None:
            self._cid = await self._sandbox._take()
        return self._cid

    async def _call(self, kind: str, payload: Argv, *, files: Files | None = None, stdin: str | bytes | None = None,
                    timeout: float | None = None, memory_mb: int | None = None, cpu_seconds: float | None = None,
                    max_output_bytes: int | None = None, env: Mapping[str, str] | None = None) -> ExecResult:
        sb = self._sandbox
        limits = sb.limits.override(timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                                    max_output_bytes=max_output_bytes)
        request = make_request(kind, payload, files=files, stdin=stdin, env=env, limits=limits)
        async with self._lock:
            cid = await self._prepare()
            return await sb._exec(cid, request, limits)

    async def aclose(self) -> None:
        """Remove the session's container; idempotent."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            if self._cid is not None:
                await asyncio.to_thread(self._sandbox._remove, self._cid)
                self._cid = None
        self._sandbox._sessions.discard(self)


def _not_started(result: ExecResult) -> bool:
    """Whether the runtime failed to start the call at all (podman's 125, Docker's 126; no launcher output)."""
    return (result.exit_code in (125, 126) and result.cpu_time == 0.0 and not result.stdout
            and ("exec failed" in result.stderr or "OCI runtime" in result.stderr))
