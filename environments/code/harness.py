"""Judging a candidate inside the sandbox so that the candidate cannot judge itself.

:func:`job` makes the run: a fixed judge script (:data:`JUDGE`) and the private job it reads on
stdin (the candidate's code, the tests with their expected values, a nonce). The environment runs
it as a one-shot sandbox call, in a fresh, empty work directory: nothing the agent left in its
session can shadow a module the judge or the candidate imports.

The judge never runs the candidate's code itself. It starts the candidate in a separate, fresh
interpreter (``python3 -I``: none of the judge's memory, files or file descriptors) and makes
itself non-dumpable, so the candidate cannot read the tests, the expected values or the nonce from
it, nor write to its output. For a function task the tests run in the judge; each call of a
function the candidate defines goes to the candidate's process over a pipe, and only plain values
come back (None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset), so an
object with a rigged ``__eq__`` never reaches a comparison. A program task runs the program once
per test, in a fresh interpreter, and compares its output in the judge. A call past the per-test
time limit, or any exchange that goes wrong, ends the candidate's process; the next call starts a
fresh one. The judge prints one report
line, after the nonce; :func:`parse_report` reads it and checks it has one result per test.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

_CODEC = r'''
# Values between the judge and the candidate: JSON, with tags for what JSON lacks.
import base64 as _b64
def encode(v, depth=0):
    if depth > 100:
        raise ValueError("the value is nested too deeply")
    t = type(v)
    if v is None or t in (bool, int, float, str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, complex):
        return {"c": [complex(v).real, complex(v).imag]}
    if isinstance(v, (bytes, bytearray)):
        return {"b": _b64.b64encode(bytes(v)).decode()}
    if isinstance(v, (list, tuple, set, frozenset)):
        tag = "l" if isinstance(v, list) else "t" if isinstance(v, tuple) else "s" if isinstance(v, set) else "fs"
        return {tag: [encode(x, depth + 1) for x in list(v)]}
    if isinstance(v, dict):
        return {"d": [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in list(v.items())]}
    raise TypeError("a %s object is not a plain value; only numbers, strings, bytes, lists, tuples, dicts, "
                    "sets and None can be passed and checked" % t.__name__)
def decode(v):
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is dict and len(v) == 1:
        (tag, x), = v.items()
        if tag == "c":
            return complex(float(x[0]), float(x[1]))
        if tag == "b":
            return _b64.b64decode(x)
        if tag in ("l", "t", "s", "fs"):
            return {"l": list, "t": tuple, "s": set, "fs": frozenset}[tag](decode(i) for i in x)
        if tag == "d":
            return {decode(k): decode(i) for k, i in x}
    raise ValueError("not an encoded value")
'''

# The candidate's side of a function task: load the code, then answer calls, one JSON line each way.
_CANDIDATE = _CODEC + r'''
import io, json, os, sys
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
PROTO_IN, PROTO_OUT = os.dup(0), os.dup(1)
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
class Capped(io.TextIOBase):
    def __init__(self, cap=2000):
        self.parts, self.size, self.cap = [], 0, cap
    def write(self, s):
        if self.size < self.cap:
            self.parts.append(s[: self.cap - self.size])
        self.size += len(s)
        return len(s)
OUT = sys.stdout = sys.stderr = Capped()
sys.stdin = io.StringIO("")
def send(msg):
    data = (json.dumps(msg) + "\n").encode()
    while data:
        data = data[os.write(PROTO_OUT, data):]
def describe(exc):
    import traceback
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-600:]
reader = os.fdopen(PROTO_IN, "rb")
job = json.loads(reader.readline())
ns = {"__name__": "__solution__", "__builtins__": __builtins__}
import linecache
linecache.cache["<solution>"] = (len(job["code"]), None, job["code"].splitlines(True), "<solution>")
try:
    exec(compile(job["code"], "<solution>", "exec"), ns)
    if job["entry_point"] not in ns:
        raise NameError("the code does not define %s" % job["entry_point"])
except SystemExit as exc:
    send({"load_error": "the code exited while loading (SystemExit: %r)" % (exc.code,)})
    raise SystemExit(0)
except BaseException as exc:
    send({"load_error": describe(exc)})
    raise SystemExit(0)
send({"functions": sorted(k for k, v in ns.items() if callable(v) and not k.startswith("__"))})
for line in reader:
    msg = json.loads(line)
    if "output" in msg:
        send({"output": "".join(OUT.parts)})
        continue
    try:
        value = ns[msg["call"]](*decode(msg["args"]), **decode(msg["kwargs"]))
        reply = {"value": encode(value)}
    except SystemExit as exc:
        reply = {"error": "SystemExit", "message": "the function called exit(%r)" % (exc.code,)}
    except BaseException as exc:
        reply = {"error": type(exc).__name__, "message": str(exc)[-600:]}
    try:
        send(reply)
    except (TypeError, ValueError, OverflowError) as exc:
        send({"error": "TypeError", "message": describe(exc)})
'''

JUDGE = _CODEC + r'''
import sys, os
# Nothing the candidate writes may be imported here: it runs as the same user, in a directory below ours.
sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]
import ast, builtins, json, linecache, select, subprocess, tempfile, time, traceback  # all before the candidate runs
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)  # an honest answer may be a big integer
job = json.loads(sys.stdin.read())
try:  # defence in depth: the launcher made itself non-dumpable already, and we inherit that
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
except Exception:
    pass
REPORT = os.dup(1)
PER_TEST, LIMIT = job["per_test"], 4 << 20
CANDIDATE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": os.getcwd(),
                 "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
os.mkdir("candidate")


class CandidateError(Exception):
    pass


class TestTimeout(BaseException):  # not an Exception: a test's own `except Exception` must not swallow it
    pass


def start(source):
    return subprocess.Popen([sys.executable, "-I", "-c", source], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd="candidate", env=CANDIDATE_ENV, close_fds=True)


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait()


def read_some(proc, deadline):
    """The next bytes the process writes ('' at its end), within the deadline."""
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestTimeout()
        if select.select([fd], [], [], left)[0]:
            return os.read(fd, 1 << 16)


def read_all(proc, deadline):
    data = bytearray()
    while True:
        chunk = read_some(proc, deadline)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > LIMIT:
            raise CandidateError("the output is too large (over %d MB)" % (LIMIT >> 20))


class Candidate:
    """The candidate's functions, in their own process. Any failure of the exchange ends that process: the
    next call starts a fresh one, so a late or stray reply can never answer a later question."""

    def __init__(self):
        self.proc, self.output, self.deadline, self.buffer = None, "", None, bytearray()

    def _line(self, deadline):
        while b"\n" not in self.buffer:
            chunk = read_some(self.proc, deadline)
            if not chunk:
                raise CandidateError("the candidate's process ended (it exited or was killed)")
            self.buffer += chunk
            if len(self.buffer) > LIMIT:
                raise CandidateError("the reply is too large (over %d MB)" % (LIMIT >> 20))
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        return json.loads(line)

    def _exchange(self, message, deadline):
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
            reply = self._line(deadline)
            if not isinstance(reply, dict):
                raise CandidateError("the candidate's process sent something that is not a reply")
            return reply
        except BaseException as exc:
            stop(self.proc)
            if isinstance(exc, (TestTimeout, CandidateError)):
                raise
            raise CandidateError("the candidate's process did not answer properly (%s)" % type(exc).__name__)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def load(self):
        """Start the candidate; its reply: the names of its functions, or why its code did not load."""
        stop(self.proc)
        self.proc, self.buffer = start(CANDIDATE_SOURCE), bytearray()
        return self._exchange({"code": job["code"], "entry_point": job["entry_point"]}, time.monotonic() + PER_TEST)

    def call(self, name, args, kwargs):
        if not self.alive():
            reply = self.load()
            if "load_error" in reply:
                raise CandidateError("the code did not load again: %s" % reply["load_error"])
        reply = self._exchange({"call": name, "args": encode(tuple(args)), "kwargs": encode(dict(kwargs))},
                               self.deadline)
        if "value" in reply:
            try:
                return decode(reply["value"])
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                stop(self.proc)
                raise CandidateError("the candidate's process sent something that is not a value")
        kind = getattr(builtins, str(reply.get("error")), None)
        message = str(reply.get("message", ""))[-600:]
        if isinstance(kind, type) and issubclass(kind, Exception) and kind is not StopIteration:
            raise kind(message)  # a test may expect it: `except ValueError`
        raise CandidateError("%s: %s" % (reply.get("error"), message))

    def collect_output(self):
        try:
            self.output = str(self._exchange({"output": True}, time.monotonic() + 1.0).get("output", ""))
        except BaseException:
            pass


def proxy(candidate, name):
    def call(*args, **kwargs):
        return candidate.call(name, args, kwargs)
    call.__name__ = name
    return call


def describe(exc):
    if isinstance(exc, TestTimeout):
        return "timed out after %s s" % PER_TEST
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-600:]


def test_names(loaded):
    """The candidate's functions the tests may call: never a builtin's name (a candidate's `abs` must not
    judge `abs(got - want) < 1e-9`) and nothing private; the entry point always."""
    functions = loaded.get("functions")
    names = [f for f in (functions if isinstance(functions, list) else []) if isinstance(f, str) and f.isidentifier()
             and not f.startswith("_") and not hasattr(builtins, f)]
    return set(names) | {job["entry_point"]}


def run_function():
    candidate = Candidate()
    try:
        loaded = candidate.load()
    except OSError:  # the judge could not start the candidate's process (a sandbox limit): not the code's fault
        raise
    except BaseException as exc:
        stop(candidate.proc)
        return {"load_error": describe(exc), "results": [], "output": ""}
    if "load_error" in loaded:
        stop(candidate.proc)
        return {"load_error": str(loaded["load_error"]), "results": [], "output": ""}
    ns = {"__name__": "__tests__"}  # one namespace: a test may use what an earlier one imported (HumanEval)
    ns.update({name: proxy(candidate, name) for name in test_names(loaded)})
    candidate.deadline = time.monotonic() + PER_TEST
    try:
        exec(compile(job["setup"], "<setup>", "exec"), ns)
    except BaseException as exc:
        stop(candidate.proc)
        return {"load_error": "the test setup failed: " + describe(exc), "results": [], "output": ""}
    results = []
    for test in job["tests"]:
        candidate.deadline = time.monotonic() + PER_TEST  # a dead candidate restarts within its first call
        try:
            exec(compile(test["code"], "<test>", "exec"), ns)
            results.append({"ok": True})
        except BaseException as exc:
            entry = {"ok": False, "error": describe(exc)}
            try:  # what the left side was, for the agent: only from a candidate still answering
                node = ast.parse(test["code"]).body
                if (len(node) == 1 and isinstance(node[0], ast.Assert) and isinstance(node[0].test, ast.Compare)
                        and candidate.alive()):
                    candidate.deadline = time.monotonic() + PER_TEST
                    entry["got"] = repr(eval(ast.unparse(node[0].test.left), ns))[:300]
            except BaseException:
                pass
            results.append(entry)
    if candidate.alive():
        candidate.collect_output()
    stop(candidate.proc)
    return {"load_error": None, "results": results, "output": candidate.output}


def run_program():
    try:
        compile(job["code"], "<solution>", "exec")
    except SyntaxError as exc:
        return {"load_error": describe(exc), "results": [], "output": ""}
    with open(os.path.join("candidate", "solution.py"), "w") as fh:
        fh.write(job["code"])
    norm = lambda s: [line.rstrip() for line in s.strip().splitlines()]
    results = []
    for test in job["tests"]:
        with tempfile.TemporaryFile() as stdin:  # a file, not a pipe: a program that never reads cannot block us
            stdin.write(test["stdin"].encode())
            stdin.seek(0)
            proc = subprocess.Popen([sys.executable, "-I", "solution.py"], stdin=stdin, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, cwd="candidate", env=CANDIDATE_ENV, close_fds=True)
        error, got = None, b""
        try:
            got = read_all(proc, time.monotonic() + PER_TEST)
            code = proc.wait(timeout=max(0.1, PER_TEST))
            if code:
                error = "exited with code %r" % code
        except TestTimeout:
            error = "timed out after %s s" % PER_TEST
        except (CandidateError, subprocess.TimeoutExpired) as exc:
            error = str(exc) or "timed out after %s s" % PER_TEST
        finally:
            stop(proc)
        text = got.decode("utf-8", "replace")
        if error is None and norm(text) == norm(test["stdout"]):
            results.append({"ok": True})
        else:
            results.append({"ok": False, "error": error or "wrong output", "got": text[:300]})
    return {"load_error": None, "results": results, "output": ""}


CANDIDATE_SOURCE = job.pop("candidate")
report = run_program() if job["kind"] == "program" else run_function()
os.write(REPORT, (job["nonce"] + json.dumps(report) + "\n").encode())
'''


def job(code: str, tests: list[dict[str, Any]], *, kind: str, entry_point: str, setup: str = "",
        per_test: float = 2.0) -> tuple[str, str, str]:
    """The judge's source, its private job (for its stdin) and the nonce that marks its report line."""
    nonce = f"@@agentgym-report-{secrets.token_hex(16)}@@"
    data = {"code": code, "tests": tests, "kind": kind, "entry_point": entry_point, "setup": setup,
            "per_test": per_test, "nonce": nonce, "candidate": _CANDIDATE}
    return JUDGE, json.dumps(data), nonce


def parse_report(stdout: str, nonce: str, tests: int) -> dict[str, Any] | None:
    """The judge's report from its stdout, or None when the run ended before writing a whole one."""
    at = stdout.rfind(nonce)
    if at < 0:
        return None
    try:
        report = json.loads(stdout[at + len(nonce):].split("\n", 1)[0])
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        return None
    if report.get("load_error") is None and len(report["results"]) != tests:
        return None
    return report
