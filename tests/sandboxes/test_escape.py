"""The escape suite: every attempt is contained, reported, and leaves the host as it was.

Runs against both back ends: the process sandbox (bubblewrap) and the Docker sandbox (through a
podman Docker-API service; skipped with the reason where podman cannot run).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


async def test_cannot_read_shadow(sandbox):
    r = await sandbox.run_python("print(open('/etc/shadow').read())")
    assert r.exit_code != 0 and r.stdout == ""
    assert "PermissionError" in r.stderr or "FileNotFoundError" in r.stderr


async def test_cannot_see_home_or_project(sandbox):
    secret = Path.home() / f".agentgym-escape-{secrets.token_hex(4)}"
    secret.write_text("home secret")
    try:
        code = (f"import os\nfor p in [{str(secret)!r}, {str(ROOT / 'pyproject.toml')!r}, {str(ROOT)!r}]:\n"
                "    try:\n        print(open(p).read() if os.path.isfile(p) else os.listdir(p))\n"
                "    except OSError as e:\n        print('denied', type(e).__name__)\n"
                f"print(sorted(os.listdir({str(Path.home())!r})) if os.path.isdir({str(Path.home())!r}) else 'no home')\n")
        r = await sandbox.run_python(code)
        assert "home secret" not in r.stdout and "[project]" not in r.stdout
        assert r.stdout.count("denied") == 3
        assert secret.name not in r.stdout
    finally:
        secret.unlink()


async def test_sessions_cannot_see_each_other(sandbox):
    token = secrets.token_hex(8)
    async with sandbox.session() as a, sandbox.session() as b:
        assert (await a.run_python(f"open('secret.txt', 'w').write({token!r})")).ok
        where = str(getattr(a, "workdir", "") or "/nonexistent")
        code = (f"import glob, os\nhits = glob.glob('/tmp/**/secret.txt', recursive=True) + "
                f"glob.glob('/work/**/secret.txt', recursive=True)\n"
                f"hits += [p for p in [{where!r} + '/secret.txt'] if os.path.exists(p)]\n"
                "print([open(h).read() for h in hits])\n")
        r = await b.run_python(code)
        assert r.ok and token not in r.stdout
        assert token in (await a.run("cat secret.txt")).stdout  # while the owner still sees it


async def test_cannot_write_outside_workdir(sandbox):
    name = f"agentgym-escape-{secrets.token_hex(4)}"
    targets = ["/", "/usr", "/etc", "/var/tmp", str(ROOT), str(Path.home())]
    code = ("import os\nfor d in %r:\n    try:\n        open(os.path.join(d, %r), 'w').write('x')\n"
            "        print('wrote', d)\n    except OSError as e:\n        print('denied', d)\n"
            "open('/work/ok.txt', 'w').write('fine'); open('/tmp/ok.txt', 'w').write('fine'); print('work ok')\n"
            % (targets, name))
    r = await sandbox.run_python(code)
    assert r.ok, r.stderr
    assert "work ok" in r.stdout
    for d in targets:  # whatever the sandbox saw, nothing reached the host
        assert not (Path(d) / name).exists()
    assert not Path("/tmp/ok.txt").exists() or Path("/tmp/ok.txt").read_text() != "fine"


async def test_no_network_even_loopback(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        code = ("import socket\nfor host, port in [('127.0.0.1', %d), ('1.1.1.1', 53)]:\n    s = socket.socket()\n"
                "    s.settimeout(2)\n    try:\n        s.connect((host, port)); print('connected', host)\n"
                "    except OSError as e:\n        print('blocked', host, type(e).__name__)\n"
                "try:\n    print('resolved', socket.getaddrinfo('deb.debian.org', 80))\n"
                "except OSError as e:\n    print('dns failed', type(e).__name__)\n" % port)
        r = await sandbox.run_python(code)
        assert "connected" not in r.stdout and "resolved" not in r.stdout
        assert r.stdout.count("blocked") == 2 and "dns failed" in r.stdout
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody knocked
    finally:
        listener.close()


async def test_fork_bomb_is_contained_and_others_still_run(sandbox, host_processes_with):
    token = f"bomb{secrets.token_hex(4)}"
    code = f"import os\n# {token}\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    bomb = asyncio.ensure_future(sandbox.run(["python3", "-c", code], timeout=4))
    await asyncio.sleep(1.0)
    other = await sandbox.run_python("print(6 * 7)", timeout=20)  # a neighbour is not starved of processes
    r = await bomb
    assert other.ok and other.stdout.strip() == "42"
    assert r.limit in ("processes", "timeout")
    await asyncio.sleep(0.5)
    assert host_processes_with(token) == []


async def test_too_many_threads_is_the_process_limit(sandbox):
    code = ("import threading, time\nthreading.stack_size(1 << 16)\n"  # small stacks: threads run out, not memory
            "for _ in range(5000):\n    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n")
    r = await sandbox.run_python(code, timeout=20)
    assert "can't start new thread" in r.stderr and r.limit == "processes", r
    assert "process limit" in r.describe()


ZOMBIES = ("import os\nprint(sum(1 for p in os.listdir('/proc') if p.isdigit()\n"
           "          and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z'))")


async def test_a_fork_bomb_leaves_no_zombies_that_would_fill_a_sessions_process_limit(sandbox):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    async with sandbox.session() as s:
        for _ in range(2):  # twice: what the first left behind must not take the second's processes
            r = await s.run(["python3", "-c", code], timeout=3)
            assert r.limit in ("processes", "timeout")
        await asyncio.sleep(1.5)  # the killed processes are reaped, not kept as zombies
        r = await s.run_python(ZOMBIES, timeout=20)
        assert r.ok and r.stdout.strip() == "0", r


async def test_memory_ten_times_the_limit(sandbox, limits):
    r = await sandbox.run_python(f"x = bytearray({10 * limits['memory_mb']} * 1024 * 1024)\nprint('allocated')")
    assert "allocated" not in r.stdout
    assert r.limit == "memory" and r.exit_code != 0


async def test_infinite_loop_times_out(sandbox):
    r = await sandbox.run_python("while True:\n    pass\n", timeout=1.5)
    assert r.limit in ("timeout", "cpu") and r.exit_code != 0
    assert r.wall_time < 1.5 + 2


async def test_cpu_limit(sandbox):
    r = await sandbox.run_python("while True:\n    pass\n", timeout=20, cpu_seconds=1)
    assert r.limit == "cpu" and r.wall_time < 15


async def test_sigterm_ignoring_process_is_killed(sandbox, host_processes_with):
    token = f"stubborn{secrets.token_hex(4)}"
    code = ("import signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"subprocess.Popen(['sh', '-c', 'trap \"\" TERM; sleep 1000; : {token}'])\n"
            "print('started', flush=True)\nwhile True:\n    time.sleep(1)\n")
    start = time.monotonic()
    r = await sandbox.run_python(code, timeout=1.5)
    assert r.limit == "timeout" and "started" in r.stdout
    assert time.monotonic() - start < 15
    await asyncio.sleep(0.5)
    assert host_processes_with(token) == []


async def test_disk_fill_stops_at_file_size_limit(sandbox, limits):
    code = ("f = open('big.bin', 'wb')\ntry:\n    for _ in range(1000):\n        f.write(b'x' * (1 << 20))\n"
            "finally:\n    import os; print('size', os.path.getsize('big.bin'))\n")
    r = await sandbox.run_python(code)
    assert r.limit == "file_size", (r.stderr, r.limit)
    size = int(r.stdout.split()[-1])
    assert size <= limits["file_size_mb"] << 20


async def test_memory_filesystems_are_capped_like_the_disk(sandbox, limits):
    # files in /dev/shm live in the host's memory: without a cap, one run could fill half of it
    code = ("import os\nwritten = 0\ntry:\n    for i in range(64):\n"
            "        with open('/dev/shm/f%d' % i, 'wb') as f:\n            f.write(b'x' * (8 << 20))\n"
            "        written += 8\nfinally:\n    print('written', written)\n"
            "    try:\n        open('/dev/evil', 'w').write('x')\n        print('dev writable')\n"
            "    except OSError as e:\n        print('dev refused', e.errno)\n")
    r = await sandbox.run_python(code, timeout=30)
    assert int(r.stdout.split()[1]) <= limits["disk_mb"], r.stdout + r.stderr
    assert "dev writable" not in r.stdout


async def test_files_too_deep_to_name_still_count_against_the_disk_quota(sandbox, limits):
    # 20 directories of 250 characters: their files' paths are longer than PATH_MAX
    code = ("import os\nfor _ in range(20):\n    os.mkdir('d' * 250)\n    os.chdir('d' * 250)\n"
            f"for i in range({limits['disk_mb'] // limits['file_size_mb'] + 2}):\n"
            f"    open('f%d' % i, 'wb').write(b'z' * ({limits['file_size_mb']} << 20))\nprint('written')\n")
    async with sandbox.session() as s:
        r = await s.run_python(code, timeout=30)
        assert r.limit == "disk", (r.limit, r.stderr[-300:])  # emptied after the call, or the tmpfs ran full
        held = ("import os\nprint(sum(os.stat(n, dir_fd=fd, follow_symlinks=False).st_size "
                "for _, _, files, fd in os.fwalk('.') for n in files))\n")
        assert int((await s.run_python(held)).stdout) <= limits["disk_mb"] << 20


async def test_a_session_call_is_stopped_soon_after_it_passes_the_disk_quota(sandbox, limits):
    files = 4 * limits["disk_mb"] // limits["file_size_mb"]  # four times the quota, one file at a time
    code = (f"import time\nfor i in range({files}):\n    open('f%d' % i, 'wb').write(b'z' * ({limits['file_size_mb']} << 20))\n"
            "    print('written', i + 1, flush=True)\n    time.sleep(0.1)\n")
    async with sandbox.session() as s:
        r = await s.run_python(code, timeout=30)
        written = int(r.stdout.split()[-1]) if r.stdout.split() else 0
        assert r.limit == "disk" and written < files, (r.limit, r.stdout[-200:])


async def test_a_tree_too_deep_for_recursion_is_measured_and_removed(sandbox, tmp_path):
    code = ("import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
            "open('f', 'wb').write(b'z' * (1 << 20))\nprint('deep')\n")
    s = sandbox.session()
    async with s:
        r = await s.run_python(code, timeout=30)
        assert "deep" in r.stdout, r.stderr[-300:]
        r = await s.run_python("import os\nprint(os.listdir('.'))")
        assert r.ok and "'d'" in r.stdout  # under the quota: kept
    workdir = getattr(s, "_workdir", None)
    assert workdir is None or not os.path.lexists(workdir)  # the session's directory is gone from the host


async def test_hundred_megabytes_of_output(sandbox, limits):
    r = await sandbox.run_python("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n",
                                 timeout=30)
    assert r.limit == "output" and r.stdout_truncated
    assert len(r.stdout) == limits["max_output_bytes"]


async def test_daemon_does_not_outlive_the_run(sandbox, host_processes_with):
    token = f"daemon{secrets.token_hex(4)}"
    code = ("import os, subprocess\nif os.fork() == 0:\n    os.setsid()\n"
            f"    subprocess.Popen(['sh', '-c', 'sleep 1000; : {token}'], start_new_session=True)\n    os._exit(0)\n"
            "print('parent done')\n")
    r = await sandbox.run_python(code)
    assert r.ok and "parent done" in r.stdout
    await asyncio.sleep(0.5)
    assert host_processes_with(token) == []


async def test_a_daemon_that_kills_its_launcher_does_not_outlive_the_call(sandbox):
    # the launcher's kill(-1) never runs then; the next call of the session must not find the daemon
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        for fd in (0, 1, 2):\n            os.dup2(os.open(os.devnull, os.O_RDWR), fd)\n"
            "        while True:\n            open('alive', 'a').write('x')\n            time.sleep(0.05)\n"
            "    os._exit(0)\ntime.sleep(0.3)\nos.kill(os.getppid(), 9)\n")
    async with sandbox.session() as s:
        await s.run_python(code)
        size = "import os, time\na = os.path.getsize('alive')\ntime.sleep(0.5)\nprint(os.path.getsize('alive') - a)\n"
        r = await s.run_python(size)
        assert r.ok and r.stdout.split() == ["0"], r.stdout + r.stderr


async def test_host_environment_is_invisible(sandbox, monkeypatch):
    secret = secrets.token_hex(12)
    monkeypatch.setenv("AGENTGYM_TEST_SECRET", secret)
    code = ("import os, glob\nprint(dict(os.environ))\nfor p in glob.glob('/proc/*/environ'):\n    try:\n"
            "        print(open(p, 'rb').read())\n    except OSError:\n        pass\n")
    r = await sandbox.run_python(code)
    assert r.ok and secret not in r.stdout and "AGENTGYM_TEST_SECRET" not in r.stdout
    r = await sandbox.run("env; cat /proc/1/environ 2>/dev/null; true")
    assert secret not in r.stdout


async def test_a_program_cannot_read_the_request_of_its_run(sandbox):
    """A run's stdin is private to it (code-v0 passes its judge the expected answers that way): no other
    process started in the run finds it in an argv, in another process's memory or behind its file
    descriptors (bubblewrap's init holds the output pipes, which carry nothing private)."""
    secret = f"private-{secrets.token_hex(8)}"
    probe = (
        "import base64, os, sys\n"
        "wanted = [sys.argv[1].encode(), base64.b64encode(sys.argv[1].encode())[:16]]\n"
        "found = []\n"
        "for pid in (p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()):\n"
        "    try:\n        found += [('cmdline', pid)] * any(w in open('/proc/%s/cmdline' % pid, 'rb').read() for w in wanted)\n"
        "    except OSError:\n        pass\n"
        "    try:\n        fds = os.listdir('/proc/%s/fd' % pid)\n    except OSError:\n        fds = []\n"
        "    for fd in fds:\n"
        "        try:\n"
        "            f = os.open('/proc/%s/fd/%s' % (pid, fd), os.O_RDONLY | os.O_NONBLOCK)\n"
        "            os.lseek(f, 0, 0) if not os.path.stat.S_ISFIFO(os.fstat(f).st_mode) else None\n"
        "            found += [('fd', pid)] * any(w in os.read(f, 1 << 20) for w in wanted)\n"
        "        except OSError:\n            pass\n"
        "    try:\n"
        "        mem = open('/proc/%s/mem' % pid, 'rb')\n"
        "        for line in open('/proc/%s/maps' % pid):\n"
        "            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "            if line.split()[1].startswith('r') and hi - lo < 64 << 20:\n"
        "                try:\n                    mem.seek(lo); data = mem.read(hi - lo)\n"
        "                except (OSError, ValueError, OverflowError):\n                    continue\n"
        "                found += [('mem', pid)] * any(w in data for w in wanted)\n"
        "    except OSError:\n        pass\n"
        "print('found', sorted(set(found)))\n")
    # the run's own process reads its stdin, then starts the probe (a fresh program, as a candidate would be)
    code = ("import subprocess, sys\nsecret = sys.stdin.read()\n"
            f"subprocess.run([sys.executable, '-I', '-c', {probe!r}, secret.split('-')[0] + '-' + secret.split('-')[1]])\n")
    r = await sandbox.run_python(code, stdin=secret, timeout=30)
    assert r.ok, r.stderr
    assert "found []" in r.stdout, r.stdout


async def test_cannot_signal_or_ptrace_host_processes(sandbox):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = ("import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                f"for pid in [{victim.pid}, {os.getpid()}, 1]:\n"
                "    try:\n        os.kill(pid, signal.SIGKILL); print('killed', pid)\n"
                "    except OSError as e:\n        print('kill denied', pid)\n"
                f"print('ptrace', libc.ptrace(16, {victim.pid}, 0, 0), ctypes.get_errno(), flush=True)\n"
                # kill(-1) reaches only the sandbox's own processes (the launcher too: the run is
                # then reported as killed, which is fine; the output above is already out).
                "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n")
        r = await sandbox.run_python(code)
        assert "ptrace -1" in r.stdout, r.stdout + r.stderr
        await asyncio.sleep(0.3)
        assert victim.poll() is None  # still alive
    finally:
        victim.kill()
        victim.wait()


async def test_symlinks_do_not_lead_out(sandbox):
    target = Path("/var/tmp") / f"agentgym-escape-{secrets.token_hex(4)}"
    target.write_text("original")
    try:
        async with sandbox.session() as s:
            r = await s.run(f"ln -s {target} link && ln -s / rootlink && ln -s .. up && "
                            f"cat link 2>&1; cat rootlink{target} 2>&1; ls up/ 2>&1; true")
            assert "original" not in r.stdout
            for files in ({"link": "overwritten"}, {"rootlink/var/tmp/x": "y"}, {"up/x": "y"}):
                r = await s.run_python("print('x')", files=files)
                assert r.exit_code == 126 and "sandbox:" in r.stderr  # files are never written through links
            await s.run_python("open('link', 'w').write('overwritten')")  # lands inside the sandbox, if anywhere
        assert target.read_text() == "original"
    finally:
        target.unlink()
