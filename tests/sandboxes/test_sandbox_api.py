"""The Sandbox protocol on both back ends: calls, results, sessions, limits, lifecycle and errors."""

from __future__ import annotations

import asyncio
import gc
import os
import stat
from pathlib import Path

import pytest

from agentgym.errors import EnvironmentClosedError, SandboxError, SandboxTimeout
from agentgym.sandboxes import ExecResult, Limits, ProcessSandbox, Sandbox, make


async def test_run_and_run_python_basics(sandbox):
    assert isinstance(sandbox, Sandbox)
    r = await sandbox.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr, r.limit) == (3, "out\n", "err\n", None)
    r = await sandbox.run("echo $((6 * 7))")  # a string is run by sh -c
    assert r.ok and r.stdout == "42\n" and r.wall_time > 0
    r = await sandbox.run_python("import sys\nprint(sys.stdin.read().upper())", stdin="hello")
    assert r.ok and r.stdout == "HELLO\n" and r.cpu_time >= 0
    r = await sandbox.run_python("print(open('data/in.txt').read(), open('raw.bin', 'rb').read())",
                                 files={"data/in.txt": "text", "raw.bin": b"\x00\x01"})
    assert r.stdout == "text b'\\x00\\x01'\n"
    r = await sandbox.run_python("import os\nprint(os.environ['GREETING'], os.environ['HOME'])", env={"GREETING": "hi"})
    assert r.stdout == "hi /work\n"


async def test_python_errors_and_exit(sandbox):
    r = await sandbox.run_python("def f():\n    return 1 / 0\nf()\n")
    assert r.exit_code == 1 and "ZeroDivisionError" in r.stderr and 'File "<code>", line 2, in f' in r.stderr
    assert "return 1 / 0" in r.stderr  # the source line is shown
    assert "bootstrap" not in r.stderr and "launcher" not in r.stderr
    r = await sandbox.run_python("def broken(:\n")
    assert r.exit_code == 1 and "SyntaxError" in r.stderr
    assert (await sandbox.run_python("exit(4)")).exit_code == 4  # exit() exists even under -S
    assert (await sandbox.run_python("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)")).exit_code == -15
    r = await sandbox.run(["no-such-command"])
    assert r.exit_code == 127 and "no-such-command" in r.stderr


async def test_a_successful_run_that_mentions_a_limit_hit_none(sandbox):
    r = await sandbox.run_python("import sys\nprint('retrying after MemoryError; No space left on device', file=sys.stderr)")
    assert r.ok and r.limit is None and r.exit_code == 0
    r = await sandbox.run_python("raise MemoryError")  # failed, and says why
    assert r.limit == "memory" and not r.ok


async def test_session_keeps_the_work_directory(sandbox):
    async with sandbox.session() as s:
        assert (await s.run_python("open('notes.txt', 'w').write('kept')")).ok
        assert (await s.run("cat notes.txt")).stdout == "kept"
        assert (await s.run_python("print(open('more.txt').read())", files={"more.txt": "x"})).stdout == "x\n"
    with pytest.raises(EnvironmentClosedError):
        await s.run("true")
    r = await sandbox.run("ls")  # one-shot runs start empty
    assert r.stdout == ""


async def test_per_call_limits_override_defaults(sandbox):
    r = await sandbox.run_python("print('x' * 5000)", max_output_bytes=100)
    assert r.stdout_truncated and len(r.stdout) == 100 and r.limit == "output" and r.truncated
    r = await sandbox.run_python("import time\ntime.sleep(5)", timeout=0.5)
    assert r.limit == "timeout" and r.exit_code == -9
    with pytest.raises(SandboxTimeout):
        r.check()
    r = await sandbox.run_python("x = bytearray(200 * 1024 * 1024)", memory_mb=100)
    assert r.limit == "memory"
    with pytest.raises(SandboxError):
        r.check()
    assert "memory" in r.describe()


async def test_bad_arguments_raise(sandbox):
    with pytest.raises(ValueError, match="relative"):
        await sandbox.run("true", files={"/etc/x": "no"})
    with pytest.raises(ValueError, match="relative"):
        await sandbox.run("true", files={"../x": "no"})
    with pytest.raises(ValueError, match="empty"):
        await sandbox.run([])
    with pytest.raises(TypeError):
        await sandbox.run_python(["print(1)"])  # type: ignore[arg-type]


async def test_concurrent_runs(sandbox):
    # a wide time limit: eight container execs at once can pass the default 10 s on a loaded 2-core
    # machine (CI once saw one come back empty); this test is about each run getting its own output
    results = await asyncio.gather(*(sandbox.run_python(f"print({i} * {i})", timeout=60) for i in range(8)))
    for r in results:
        assert r.exit_code == 0 and r.limit is None, r.describe()
    assert [r.stdout.strip() for r in results] == [str(i * i) for i in range(8)]


def test_limits_validate():
    with pytest.raises(ValueError, match="timeout must be a positive number, got 0"):
        Limits(timeout=0)
    for bad in ("lots", True):  # e.g. sandbox_options={memory_mb: lots} from a command line
        with pytest.raises(ValueError, match=f"memory_mb must be a positive number, got {bad!r}"):
            Limits(memory_mb=bad)
    assert Limits().override(timeout=3, memory_mb=None).timeout == 3
    with pytest.raises(ValueError, match="unknown sandbox kind 'vm'"):
        make("vm")
    assert isinstance(make("process", timeout=2), ProcessSandbox)
    assert ExecResult(exit_code=0).ok and not ExecResult(exit_code=0, limit="cpu").ok


# ----- process sandbox specifics ------------------------------------------------------------------
async def test_missing_bwrap_names_the_fix():
    sb = ProcessSandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxError, match="apt-get install -y bubblewrap.*Docker"):
        await sb.run("true")
    await sb.aclose()


async def test_bwrap_that_cannot_create_namespaces_names_the_fix(tmp_path):
    # A stand-in for a kernel that refuses user namespaces: bwrap's own message, then failure.
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.chmod(tmp_path, 0o755)
    sb = ProcessSandbox(bwrap=str(fake))
    with pytest.raises(SandboxError, match="No permissions to create new namespace.*user namespaces.*Docker"):
        await sb.start()
    assert sb.closed


@pytest.mark.parametrize("warm", [0, 2])
async def test_process_sandbox_leaves_nothing_behind(warm, host_processes_with):
    sb = ProcessSandbox(warm=warm)
    async with sb:
        folder = sb._dir
        assert folder is not None and folder.is_dir()
        session = sb.session()
        await session.run_python("open('f', 'w').write('x')")
        workdir = session.workdir
        assert workdir is not None and (workdir / "f").read_text() == "x"
        await asyncio.gather(*(sb.run_python("print(1)") for _ in range(3)))
        token = str(folder)
        if warm:
            assert host_processes_with(token)  # launchers are waiting
    assert not folder.exists()
    assert host_processes_with(token) == []
    with pytest.raises(EnvironmentClosedError):
        await sb.run("true")
    mounts = Path("/proc/self/mountinfo").read_text()
    assert token not in mounts


async def test_a_cancelled_close_still_removes_the_directory_and_processes(host_processes_with):
    sb = ProcessSandbox(warm=2, timeout=30)  # the time limit must not be what ends the busy call
    await sb.start()
    folder = sb._dir
    await sb.session().run_python("print(1)")
    busy = asyncio.ensure_future(sb.run_python("import time\ntime.sleep(60)"))
    while not sb._running:
        await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(sb.aclose())
    await asyncio.sleep(0)  # the close is waiting for its launchers to be reaped
    closing.cancel()  # as a step timeout or Ctrl-C does
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert not folder.exists()
    result = await asyncio.wait_for(busy, 5)  # killed, not left sleeping
    assert result.exit_code == -9
    for _ in range(100):  # killed already; reaping is asynchronous
        if not host_processes_with(str(folder)):
            break
        await asyncio.sleep(0.05)
    assert host_processes_with(str(folder)) == []


async def test_a_sandbox_dropped_unclosed_removes_its_directory():
    sb = ProcessSandbox()
    await sb.start()
    folder = sb._dir
    assert folder is not None and folder.is_dir()
    del sb
    gc.collect()
    assert not folder.exists()


async def test_warm_launches_closed_at_once_leave_no_process(host_processes_with):
    # killed right after spawn, before bwrap's child sets --die-with-parent: the child must die too
    for _ in range(20):
        sb = ProcessSandbox(warm=4)
        async with sb:
            token = str(sb._dir)
        assert host_processes_with(token) == []


async def test_warm_pool_serves_runs():
    async with ProcessSandbox(warm=2) as sb:
        await asyncio.sleep(0.3)
        assert len(sb._idle) == 2
        r = await sb.run_python("print('warm')")
        assert r.stdout == "warm\n" and len(sb._idle) == 2  # refilled
        async with sb.session() as s:
            for i in range(3):
                assert (await s.run_python(f"print({i})")).stdout == f"{i}\n"


async def test_session_disk_quota():
    async with ProcessSandbox(disk_mb=4, file_size_mb=2) as sb:
        async with sb.session() as s:
            r = await s.run_python("for i in range(6):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))")
            assert r.limit == "disk" and "emptied" in r.stderr
            assert (await s.run("ls")).stdout == ""


# ----- Docker sandbox specifics -------------------------------------------------------------------
async def test_docker_unreachable_endpoint_names_the_fix(tmp_path):
    pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'agentgym[docker]')")
    from agentgym.sandboxes import DockerSandbox

    from agentgym.sandboxes import make

    sb = make("docker", base_url=f"unix://{tmp_path}/nothing.sock")  # by name, as code-v0's sandbox="docker"
    assert isinstance(sb, DockerSandbox)
    with pytest.raises(SandboxError, match="no Docker API at .*podman system service.*ProcessSandbox"):
        await sb.run("true")
    await sb.aclose()


async def test_docker_missing_image_names_the_fix(docker_url):
    from agentgym.sandboxes import DockerSandbox

    sb = DockerSandbox(base_url=docker_url, image="localhost/agentgym-missing:0")
    with pytest.raises(SandboxError, match="not present.*debootstrap"):
        await sb.start()
    await sb.aclose()


async def test_docker_warm_pool_and_cleanup(docker_url):
    import docker

    from agentgym.sandboxes import DockerSandbox

    from_env = docker.DockerClient(base_url=docker_url)
    async with DockerSandbox(base_url=docker_url, warm=1) as sb:
        for _ in range(100):
            if sb._idle:
                break
            await asyncio.sleep(0.1)
        assert len(sb._idle) == 1
        r = await sb.run_python("print('warm')")
        assert r.stdout == "warm\n"
        ids = set(sb._containers)
    left = {c.id for c in from_env.containers.list(all=True, filters={"label": "agentgym.sandbox"})}
    assert not ids & left
    from_env.close()


def test_docker_close_during_container_creation_leaves_no_container(docker_url):
    """Containers still being created in threads when the sandbox closes are removed too."""
    import docker

    from agentgym.sandboxes import DockerSandbox

    owners = []

    async def scenario() -> None:
        sb = DockerSandbox(base_url=docker_url, warm=3)
        owners.append(sb._owner)
        await sb.start()
        run = asyncio.ensure_future(sb.run("true"))  # a cold container, its creation cancelled below
        await asyncio.sleep(0.05)  # the creations are under way in their threads (each takes longer)
        run.cancel()
        await sb.aclose()

    asyncio.run(scenario())  # returns once every thread has finished (the default executor is shut down)
    client = docker.DockerClient(base_url=docker_url)
    try:
        left = client.containers.list(all=True, filters={"label": f"agentgym.sandbox.owner={owners[0]}"})
        assert left == []
    finally:
        client.close()
