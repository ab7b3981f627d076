"""The test harness that runs a candidate against a task's tests inside the sandbox.

:func:`script` returns Python source to run with ``run_python``. It loads the candidate, runs
each test with a per-test time limit (SIGALRM), and prints one report line, prefixed with a nonce,
to the original stdout; the candidate's own output goes to a capped buffer (and anything written
straight to file descriptors 1 and 2 to /dev/null), so a flood of output cannot hide the report.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

_HARNESS = r'''
import ast, io, json, linecache, os, signal, sys, traceback
D = json.loads(%(data)s)
REPORT_FD = os.dup(1)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.dup2(_null, 2)


class Capped(io.TextIOBase):
    def __init__(self, cap=2000):
        self.parts, self.size, self.cap = [], 0, cap
    def write(self, s):
        if self.size < self.cap:
            self.parts.append(s[: self.cap - self.size])
        self.size += len(s)
        return len(s)
    def getvalue(self):
        return "".join(self.parts)


class TestTimeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise TestTimeout()


signal.signal(signal.SIGALRM, on_alarm)
linecache.cache["<solution>"] = (len(D["code"]), None, D["code"].splitlines(True), "<solution>")


def describe(exc):
    if isinstance(exc, TestTimeout):
        return "timed out after %%s s" %% D["per_test"]
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-600:]


def limited(fn):
    signal.setitimer(signal.ITIMER_REAL, D["per_test"])
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_function():
    out = sys.stdout = sys.stderr = Capped()
    ns = {"__name__": "__solution__", "__builtins__": __builtins__}
    try:
        limited(lambda: exec(compile(D["code"], "<solution>", "exec"), ns))
        if D["setup"]:
            exec(compile(D["setup"], "<setup>", "exec"), ns)
        if D["entry_point"] not in ns:
            raise NameError("the code does not define %%s" %% D["entry_point"])
    except BaseException as exc:
        return {"load_error": describe(exc), "results": [], "output": out.getvalue()}
    results = []
    for test in D["tests"]:
        try:
            limited(lambda: exec(compile(test["code"], "<test>", "exec"), ns))
            results.append({"ok": True})
        except BaseException as exc:
            entry = {"ok": False, "error": describe(exc)}
            try:
                node = ast.parse(test["code"]).body
                if len(node) == 1 and isinstance(node[0], ast.Assert) and isinstance(node[0].test, ast.Compare):
                    left = ast.unparse(node[0].test.left)
                    entry["got"] = repr(limited(lambda: eval(left, ns)))[:300]
            except BaseException:
                pass
            results.append(entry)
    return {"load_error": None, "results": results, "output": out.getvalue()}


def run_program():
    results, load_error = [], None
    try:
        code = compile(D["code"], "<solution>", "exec")
    except SyntaxError as exc:
        return {"load_error": describe(exc), "results": [], "output": ""}
    for test in D["tests"]:
        out = sys.stdout = Capped(100000)
        sys.stderr = Capped()
        sys.stdin = io.StringIO(test["stdin"])
        try:
            limited(lambda: exec(code, {"__name__": "__main__", "__builtins__": __builtins__}))
            error = None
        except SystemExit as exc:
            error = None if exc.code in (None, 0) else "exited with code %%r" %% (exc.code,)
        except BaseException as exc:
            error = describe(exc)
        got = out.getvalue()
        norm = lambda s: [line.rstrip() for line in s.strip().splitlines()]
        if error is None and norm(got) == norm(test["stdout"]):
            results.append({"ok": True})
        else:
            results.append({"ok": False, "error": error or "wrong output", "got": got[:300]})
    return {"load_error": load_error, "results": results, "output": ""}


report = run_program() if D["kind"] == "program" else run_function()
os.write(REPORT_FD, (D["nonce"] + json.dumps(report) + "\n").encode())
'''


def script(code: str, tests: list[dict[str, Any]], *, kind: str, entry_point: str, setup: str = "",
           per_test: float = 2.0) -> tuple[str, str]:
    """Source of a harness run and the nonce that marks its report line."""
    nonce = f"@@agentgym-report-{secrets.token_hex(8)}@@"
    data = {"code": code, "tests": tests, "kind": kind, "entry_point": entry_point, "setup": setup,
            "per_test": per_test, "nonce": nonce}
    return _HARNESS % {"data": repr(json.dumps(data))}, nonce


def parse_report(stdout: str, nonce: str) -> dict[str, Any] | None:
    """The harness's report from its stdout, or None when the run ended before writing it."""
    at = stdout.rfind(nonce)
    if at < 0:
        return None
    try:
        return json.loads(stdout[at + len(nonce):].split("\n", 1)[0])
    except ValueError:
        return None
