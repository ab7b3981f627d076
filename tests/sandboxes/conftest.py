"""Sandbox fixtures: a real bubblewrap sandbox, and a real Docker API served by podman.

The Docker back end is tested against ``podman system service`` on a socket of the session's own
(runtime runc; crun fails on our machines), with an image built without any registry:
``debootstrap --variant=minbase --include=python3`` into a folder, then ``podman import``. The
image lives in podman storage under a per-machine cache folder (``AGENTGYM_TEST_CACHE``, default
``/var/tmp/agentgym-test-cache``), so it is built at most once per machine. Where podman, runc or
debootstrap cannot run, the Docker tests skip and say why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentgym.sandboxes import ProcessSandbox

CACHE = Path(os.environ.get("AGENTGYM_TEST_CACHE", "/var/tmp/agentgym-test-cache"))
IMAGE = "localhost/agentgym-python:bookworm"
MIRROR = os.environ.get("AGENTGYM_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _podman(*args: str) -> list[str]:
    # podman's database remembers its runroot, so it stays beside the storage, in the cache.
    return ["podman", "--root", str(CACHE / "podman"), "--runroot", str(CACHE / "podman-run"), "--runtime", "runc",
            *args]


def _remove_build(rootfs: Path) -> None:
    """Remove a debootstrap folder, unmounting first what an interrupted build left mounted in it
    (debootstrap mounts /proc inside the target; deleting through a mount would reach the host)."""
    prefix = str(rootfs) + "/"
    mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4].startswith(prefix)]
    for point in sorted(mounted, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    if any(line.split()[4].startswith(prefix) for line in Path("/proc/self/mountinfo").read_text().splitlines()):
        pytest.skip(f"cannot unmount what an earlier build left mounted under {rootfs}")
    shutil.rmtree(rootfs, ignore_errors=True)


def _ensure_image() -> None:
    """Build the Python image once per machine: debootstrap a minimal Debian, import it into podman."""
    with _locked(CACHE / "image.lock"):
        if subprocess.run(_podman("image", "exists", IMAGE)).returncode == 0:
            return
        if shutil.which("debootstrap") is None:
            pytest.skip("building the test image needs debootstrap (apt-get install -y debootstrap)")
        rootfs = CACHE / "rootfs-build"
        _remove_build(rootfs)
        built = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(rootfs),
                                MIRROR], capture_output=True, text=True)
        if built.returncode != 0:
            _remove_build(rootfs)
            pytest.skip(f"debootstrap could not build the test image: {built.stderr.strip()[-300:]}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(_podman("import", "-", IMAGE), stdin=tar.stdout, capture_output=True,
                                  text=True)
        tar.wait()
        _remove_build(rootfs)
        if imported.returncode != 0:
            pytest.skip(f"podman import failed: {imported.stderr.strip()[-300:]}")


@pytest.fixture(scope="session")
def docker_url(tmp_path_factory):
    """``unix://`` URL of a podman Docker-API service holding the test image (session-wide)."""
    pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'agentgym[docker]')")
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"no Docker engine here and no {tool} to serve its API (apt-get install -y podman runc)")
    if os.geteuid() != 0:
        pytest.skip("the podman fixture runs rootful podman; run the tests as root or set DOCKER_HOST yourself")
    _ensure_image()
    here = tmp_path_factory.mktemp("podman")
    sock, log = here / "podman.sock", here / "service.log"
    with open(log, "wb") as out:
        service = subprocess.Popen(_podman("system", "service", "--time=0", f"unix://{sock}"),
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if service.poll() is not None or time.monotonic() > deadline:
            service.kill()
            service.wait()
            pytest.skip(f"podman system service did not start: {log.read_text()[-300:]}")
        time.sleep(0.05)
    yield f"unix://{sock}"
    service.terminate()
    try:
        service.wait(10)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait()


def _host_processes_with(token: str) -> list[int]:
    """Host pids whose command line contains ``token``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return [p for p in pids if p != os.getpid()]


@pytest.fixture
def host_processes_with():
    """A function: the host pids whose command line contains a token."""
    return _host_processes_with


ESCAPE_LIMITS = dict(timeout=5.0, memory_mb=256, cpu_seconds=5, max_output_bytes=64 * 1024, file_size_mb=8,
                     max_processes=32, disk_mb=32)


@pytest.fixture
def limits():
    """The default limits of the sandboxes the escape suite attacks."""
    return dict(ESCAPE_LIMITS)


@pytest.fixture(params=["process", "docker"])
def kind(request):
    """Each back end in turn; skipped with the reason where it cannot run."""
    if request.param == "process":
        request.getfixturevalue("bwrap")
    return request.param


@pytest.fixture
async def sandbox(kind, request):
    """A started sandbox of each kind; afterwards its directories and containers must be gone."""
    if kind == "process":
        sb = ProcessSandbox(**ESCAPE_LIMITS)
    else:
        from agentgym.sandboxes import DockerSandbox

        sb = DockerSandbox(base_url=request.getfixturevalue("docker_url"), image=IMAGE, **ESCAPE_LIMITS)
    async with sb:
        yield sb
    if kind == "process":
        assert sb._dir is None
    else:
        assert not sb._containers
