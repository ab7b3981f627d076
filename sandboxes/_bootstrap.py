"""The launcher that runs inside every sandbox, before the user's code.

Its source is passed to ``python3 -I -S -c`` (so it must run on any Python 3.7+ and import nothing
outside the standard library). It reads one JSON request, writes the request's files into the
working directory, then forks: the child lowers its rlimits, installs the request's environment
and stdin and runs the code (in process, for Python) or ``execvp``s the command; the parent waits
for it, kills every process the child left behind (``kill(-1)`` spares only itself and pid 1) and
reports the exit status and CPU time. Started ahead of time, it is the warm pool's idle process:
the interpreter is up and blocked on the request.

argv: ``fd REQUEST_FD STATUS_FD`` (process sandbox: request on a pipe, status JSON on a pipe) or
``stdin`` (Docker: the request's length on a line, then the request as JSON, on stdin; the status is
the last stderr line, prefixed with the request's ``marker``). The status is
``EXIT UTIME STIME MAXRSS_KB``.
"""

import binascii
import builtins
import marshal
import os
import resource
import site  # with -S this only loads the module; setquit() below gives exit() and quit()
import sys

# Nothing here imports re or enum (base64, json, signal, traceback and linecache all do): those
# imports cost more than the interpreter's own start-up. They are loaded only where needed.
_RLIMITS = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU, "fsize": resource.RLIMIT_FSIZE,
            "nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}
_SIGKILL = 9


def _read_request():
    if sys.argv[1] == "fd":  # a marshal-encoded dict (the host runs this same interpreter)
        rfd, sfd = int(sys.argv[2]), int(sys.argv[3])
        parts = []
        while True:
            chunk = os.read(rfd, 1 << 20)
            if not chunk:
                break
            parts.append(chunk)
        os.close(rfd)
        req = marshal.loads(b"".join(parts))

        def report(status):
            os.write(sfd, (status + "\n").encode())
            os.close(sfd)
        return req, report, sfd
    import json  # Docker: "LENGTH\n" and that many bytes of JSON on stdin (never in argv, which anyone may read)
    head = b""
    while not head.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise SystemExit("sandbox: the request ended early")
        head += byte
    left, parts = int(head), []
    while left:
        chunk = os.read(0, min(left, 1 << 20))
        if not chunk:
            raise SystemExit("sandbox: the request ended early")
        parts.append(chunk)
        left -= len(chunk)
    req = json.loads(b"".join(parts))

    def report(status):
        os.write(2, ("\n" + req["marker"] + status + "\n").encode())
    return req, report, None


def _write_files(files):
    for rel, payload in files.items():
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if rel.startswith("/") or ".." in parts or not parts:
            raise ValueError("file path must be relative and stay in the work directory: %r" % rel)
        if len(parts) > 1:
            parent = os.path.join(*parts[:-1])
            if not os.path.realpath(parent).startswith(os.path.realpath(".") + os.sep):
                raise ValueError("file path leads out of the work directory through a symlink: %r" % rel)
            os.makedirs(parent, exist_ok=True)
            if not os.path.realpath(parent).startswith(os.path.realpath(".") + os.sep):
                raise ValueError("file path leads out of the work directory through a symlink: %r" % rel)
        fd = os.open(os.path.join(*parts), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(binascii.a2b_base64(payload))


def _stdin_fd(data):
    if data is None:
        return os.open("/dev/null", os.O_RDONLY)
    raw = binascii.a2b_base64(data)
    fd = os.memfd_create("stdin") if hasattr(os, "memfd_create") else None
    if fd is None:
        r, w = os.pipe()  # small inputs only; memfd exists on every Linux Python 3.8+
        os.write(w, raw)
        os.close(w)
        return r
    os.write(fd, raw)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _child(req, stdin_fd, status_fd):
    os.dup2(stdin_fd, 0)
    if status_fd is not None:
        os.close(status_fd)
    for name, (soft, hard) in req["rlimits"].items():
        resource.setrlimit(_RLIMITS[name], (soft, hard))
    os.environ.clear()
    os.environ.update(req["env"])
    if req["kind"] == "exec":
        argv = req["argv"]
        try:
            os.execvpe(argv[0], argv, req["env"])
        except OSError as exc:
            os.write(2, ("sandbox: cannot run %r: %s\n" % (argv[0], exc.strerror)).encode())
            os._exit(127)
    code = req["code"]
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = ["<code>"] + list(req.get("args", []))
    sys.path.insert(0, os.getcwd())
    site.setquit()
    try:
        exec(compile(code, "<code>", "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - print it the way the interpreter would
        import linecache
        import traceback
        linecache.cache["<code>"] = (len(code), None, code.splitlines(True), "<code>")
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.stderr.flush()
        raise SystemExit(1)
    raise SystemExit(0)


def _undumpable():
    """Keep the code we run out of this process: with PR_SET_DUMPABLE 0 a process of the same user cannot
    read its memory (the request: a judge's private input) or open its file descriptors through /proc.
    The run's own process inherits it across fork; a program it execs starts dumpable again."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE; about 5 ms, before the request arrives
    except Exception:  # noqa: BLE001 - no ctypes or no prctl (not Linux): run without it
        pass


def main():
    _undumpable()
    req, report, status_fd = _read_request()
    os.chdir(req["cwd"])
    try:
        _write_files(req.get("files", {}))
        stdin_fd = _stdin_fd(req.get("stdin"))
    except (OSError, ValueError) as exc:
        os.write(2, ("sandbox: %s\n" % exc).encode())
        report("126 0.0 0.0 0")
        return
    pid = os.fork()
    if pid == 0:
        _child(req, stdin_fd, status_fd)
        return
    _, status, usage = os.wait4(pid, 0)
    try:
        os.kill(-1, _SIGKILL)  # whatever the run left behind (daemons); spares us and pid 1
    except OSError:
        pass
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    report("%d %r %r %d" % (code, usage.ru_utime, usage.ru_stime, usage.ru_maxrss))


main()
