"""code-v0: suites, generator determinism, every tool and failure path, milestones, state keys, policies,
and a judge the candidate cannot fool.

Runs real code in the real process sandbox (skipped with the reason where bubblewrap cannot run).
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

import agentgym as ag
import agentgym.environments.code  # noqa: F401 - registers the humaneval suite
from agentgym.sandboxes import ProcessSandbox
from agentgym.environments.code import harness
from agentgym.tasks.code import generate
from agentgym.types import Task, ToolCall


needs_sandbox = pytest.mark.usefixtures("bwrap")  # skips, saying why, where bubblewrap cannot run
SUITES = ["train", "test-seen", "test-unseen", "humaneval"]


def test_suites_and_sizes():
    assert set(SUITES) <= set(ag.registry.suites("code-v0"))
    sizes = {s: len(ag.load_tasks("code-v0", s)) for s in SUITES}
    assert sizes["humaneval"] == 164
    assert sizes["train"] + sizes["test-seen"] + sizes["test-unseen"] >= 300
    train = ag.load_tasks("code-v0", "train")
    families = {t.data["family"] for t in train}
    assert {f.split("-")[0] for f in families} >= {"strings", "lists", "math", "parsing", "structures",
                                                   "simulation", "algorithms"}
    assert all(t.split == "train" for t in train)
    assert all(t.split == "test" for s in SUITES[1:] for t in ag.load_tasks("code-v0", s))


def test_held_out_suites_never_repeat_train():
    train = ag.load_tasks("code-v0", "train")
    seen = ag.load_tasks("code-v0", "test-seen")
    unseen = ag.load_tasks("code-v0", "test-unseen")
    train_keys = {(t.data["family"], t.data["params"]) for t in train}
    assert not train_keys & {(t.data["family"], t.data["params"]) for t in seen}
    assert {t.data["family"] for t in seen} <= {t.data["family"] for t in train}
    assert not {t.data["family"] for t in unseen} & {t.data["family"] for t in train}
    assert len({t.data["solution"] for t in train}) == len(train)  # variants differ in substance
    assert not {t.data["solution"] for t in train} & {t.data["solution"] for t in seen + unseen}


def test_regenerating_gives_identical_files(tmp_path):
    generate.write(tmp_path)
    for name in ("train.jsonl", "test-seen.jsonl", "test-unseen.jsonl"):
        committed = Path(generate.HERE / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"{name} differs from a fresh generation"
    assert generate.generate(1)["train"] != generate.generate(generate.SEED)["train"]  # the seed matters


def test_humaneval_is_read_from_the_package_not_the_repo():
    from agentgym.tasks.code import humaneval

    assert "site-packages" in str(humaneval.data_file()) or "dist-packages" in str(humaneval.data_file())
    root = Path(ag.__file__).resolve().parents[1]
    assert not list(root.glob("tasks/code/*humaneval*.jsonl*"))
    task = ag.load_tasks("code-v0", "humaneval")[0]
    assert task.id == "code/humaneval/HumanEval-0" and task.data["entry_point"] == "has_close_elements"
    assert task.data["hidden_tests"] and "candidate = has_close_elements" in task.data["test_setup"]


@pytest.fixture
async def sandbox(bwrap):
    async with ProcessSandbox(warm=2) as sb:
        yield sb


@pytest.fixture
async def env(sandbox):
    async with ag.make("code-v0", sandbox=sandbox) as e:
        yield e


def _task(suite: str = "train", family: str = "lists-pipeline"):
    return next(t for t in ag.load_tasks("code-v0", suite) if t.data["family"] == family)


async def _play_expert(env, task) -> tuple[float, bool, list[str]]:
    await env.reset(task)
    for _ in range(task.max_turns):
        result = await env.step(env.expert_action())
        if result.terminated or result.truncated:
            break
    return env.episode_reward, env.success, list(env.reached)


@needs_sandbox
@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
async def test_expert_solves_every_task(suite, sandbox):
    tasks = ag.load_tasks("code-v0", suite)
    failures: list[str] = []
    queue = list(tasks)

    async def worker() -> None:
        async with ag.make("code-v0", sandbox=sandbox) as env:
            while queue:
                task = queue.pop()
                reward, success, reached = await _play_expert(env, task)
                if reward != 1.0 or not success or "half-hidden-pass" not in reached:
                    failures.append(f"{task.id}: reward {reward}, reached {reached}")

    await asyncio.gather(*(worker() for _ in range(3)))
    assert failures == [], failures[:5]


@needs_sandbox
async def test_tools_and_milestones(env):
    task = _task()
    first = await env.reset(task)
    assert task.prompt in first and "submit(code)" in first
    assert [s.name for s in env.tools] == ["run_python", "run_tests", "submit"]

    r = await env.step(ToolCall(name="run_python", arguments={"code": "open('scratch.txt', 'w').write('a')\nprint(2 + 2)"}))
    assert r.valid and "4" in r.observation and r.milestones == ["runs"]
    r = await env.step(ToolCall(name="run_python", arguments={"code": "print(open('scratch.txt').read())"}))
    assert "a" in r.observation  # the episode's session keeps files
    r = await env.step(ToolCall(name="run_python", arguments={"code": "1/0"}))
    assert "ZeroDivisionError" in r.observation and "exit code 1" in r.observation

    wrong = f"def {task.data['entry_point']}(nums):\n    return -12345\n"
    r = await env.step(ToolCall(name="run_tests", arguments={"code": wrong}))
    assert "Public tests: 0/3 passed." in r.observation and "FAILED" in r.observation and "-12345" in r.observation
    r = await env.step(ToolCall(name="run_tests", arguments={"code": task.data["solution"]}))
    assert "3/3 passed" in r.observation and r.milestones == ["public-tests-pass"]
    r = await env.step(ToolCall(name="submit", arguments={"code": task.data["solution"]}))
    assert r.terminated and r.reward == 1.0 and r.info["success"] and r.milestones == ["half-hidden-pass"]
    r = await env.step(ToolCall(name="submit", arguments={"code": task.data["solution"]}))
    assert not r.valid  # the episode is over


@needs_sandbox
async def test_partial_submission_rewards_the_fraction(env):
    task = _task("train", "math-recurrence")
    await env.reset(task)
    hidden = task.data["hidden_tests"]
    # Pass exactly the hidden tests whose call we hard-code.
    import ast

    table = {}
    for t in hidden[:4]:
        node = ast.parse(t["code"]).body[0].test
        table[ast.literal_eval(node.left.args[0])] = ast.literal_eval(node.comparators[0])
    code = f"def term(n):\n    return {table!r}.get(n, -1)\n"
    r = await env.step(ToolCall(name="submit", arguments={"code": code}))
    expected = sum(1 for t in hidden if any(f"term({k})" in t["code"] for k in table)) / len(hidden)
    assert r.terminated and r.reward == pytest.approx(expected) and not r.info["success"]
    assert ("half-hidden-pass" in r.milestones) == (expected >= 0.5)


@needs_sandbox
async def test_failure_paths(env):
    task = _task()
    await env.reset(task)
    r = await env.step(ToolCall(name="run_python", arguments={"code": "   "}))
    assert not r.valid and "needs some code" in r.observation
    r = await env.step(ToolCall(name="run_tests", arguments={"code": "def other():\n    pass\n"}))
    assert "does not define process" in r.observation
    r = await env.step(ToolCall(name="run_tests", arguments={"code": "def process(:\n"}))
    assert "SyntaxError" in r.observation
    r = await env.step(ToolCall(name="run_tests", arguments={"code": "def process(nums):\n    while True:\n        pass\n"}))
    assert "timed out" in r.observation
    r = await env.step(ToolCall(name="run_python", arguments={"code": "while True:\n    pass\n"}))
    assert "timed out" in r.observation or "CPU" in r.observation
    r = await env.step(ToolCall(name="run_python", arguments={"code": "print('x' * 10**6)"}))
    assert "more characters" in r.observation or "too much output" in r.observation
    flood = "import os\nos.write(1, b'y' * 10**6)\ndef process(nums):\n    print('noise' * 1000)\n    return None\n"
    r = await env.step(ToolCall(name="run_tests", arguments={"code": flood}))
    assert "Public tests:" in r.observation  # the report survives the candidate's output
    r = await env.step(ToolCall(name="frobnicate", arguments={}))
    assert not r.valid and "unknown tool" in r.observation
    r = await env.step(ToolCall(name="submit", arguments={"code": "import sys\nsys.exit(0)\n"}))
    assert r.terminated and r.reward == 0.0 and "failed to load" in r.observation


@needs_sandbox
async def test_program_tasks(env):
    task = _task("train", "parsing-report")
    await env.reset(task)
    r = await env.step(ToolCall(name="run_tests", arguments={"code": "print('nothing')"}))
    assert "expected output" in r.observation
    r = await env.step(ToolCall(name="submit", arguments={"code": task.data["solution"]}))
    assert r.reward == 1.0


@needs_sandbox
async def test_state_key_follows_behaviour_not_turns(env):
    task = _task()
    await env.reset(task)
    start = env.state_key()
    r1 = await env.step(ToolCall(name="run_python", arguments={"code": "print(1)"}))
    r2 = await env.step(ToolCall(name="run_python", arguments={"code": "print(0 + 1)"}))  # same behaviour
    assert r1.state_key == r2.state_key != start
    r3 = await env.step(ToolCall(name="run_python", arguments={"code": "print(2)"}))
    assert r3.state_key != r2.state_key
    await env.reset(task)
    assert env.state_key() == start
    r = await env.step(ToolCall(name="run_python", arguments={"code": "print(1)  # a different text"}))
    assert r.state_key == r1.state_key


@needs_sandbox
async def test_random_policy_runs_episodes(env):
    rng = random.Random(0)
    for task in ag.load_tasks("code-v0", "test-unseen")[:3]:
        await env.reset(task)
        for _ in range(task.max_turns):
            action = env.random_action(rng)
            assert action.name in {"run_python", "run_tests", "submit"}
            r = await env.step(action)
            assert 0.0 <= r.reward <= 1.0
            if r.terminated or r.truncated:
                break


@needs_sandbox
async def test_a_judge_that_cannot_start_the_code_blames_the_sandbox_not_the_code():
    env = ag.make("code-v0", sandbox_options={"max_processes": 1})
    try:
        await env.reset(_task())
        r = await env.step(env.expert_action())  # the reference solution
        assert r.observation == "The tests could not run: [sandbox: the run exceeded the process limit]"
    finally:
        await env.aclose()
    env = ag.make("code-v0")
    try:
        await env.reset(_task())
        r = await env.step(ToolCall(name="run_tests", arguments={"code": "import time\ntime.sleep(30)\n"}))
        assert r.observation == "Your code failed to load: timed out after 2.0 s"
    finally:
        await env.aclose()


@needs_sandbox
async def test_env_owns_and_closes_its_sandbox():
    env = ag.make("code-v0", sandbox_options={"warm": 1})
    await env.reset(_task())
    r = await env.step(env.expert_action())
    assert r.valid
    sb = env.execution.sandbox
    await env.aclose()
    assert sb.closed and env.closed


def test_bad_options():
    with pytest.raises(ValueError, match="timeout"):
        ag.make("code-v0", timeout=0)
    with pytest.raises(ValueError, match="unknown sandbox kind"):
        ag.make("code-v0", sandbox="vm")


def test_task_files_are_valid_json():
    for name in ("train", "test-seen", "test-unseen"):
        for line in (generate.HERE / f"{name}.jsonl").read_text().splitlines():
            data = json.loads(line)
            assert data["env"] == "code-v0" and data["data"]["hidden_tests"]


# ----- judging: a candidate cannot judge itself, and plain values cross between the processes intact --------
# Each attack below got full reward from the earlier harness (candidate and tests in one interpreter, in the
# session's work directory).


async def _submit(env, task: Task, code: str, before: list[str] = ()) -> float:
    await env.reset(task)
    for c in before:
        await env.step(ToolCall(name="run_python", arguments={"code": c}))
    r = await env.step(ToolCall(name="submit", arguments={"code": code}))
    assert r.terminated
    return r.reward


# Reads every other process's memory for the report nonce, then writes a forged all-pass report into
# every stdout it can open. Against the launcher or the judge when they are dumpable, both steps work.
STEAL_NONCE = r'''
import os, re, json
N = {n}
def scan():
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            maps = open("/proc/%s/maps" % pid).read().splitlines()
            mem = open("/proc/%s/mem" % pid, "rb")
        except OSError:
            continue
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if not perms.startswith("r") or hi - lo > 64 << 20:
                continue
            try:
                mem.seek(lo)
                found = re.search(rb"@@agentgym-report-[0-9a-f]+@@", mem.read(hi - lo))
            except (OSError, ValueError, OverflowError):
                continue
            if found:
                return found.group()
NONCE = scan()
FORGED = 0
if NONCE:
    line = NONCE + json.dumps({{"load_error": None, "results": [{{"ok": True}}] * N, "output": ""}}).encode() + b"\n"
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fd = os.open("/proc/%s/fd/1" % pid, os.O_WRONLY)
            os.write(fd, line)
            FORGED += 1
        except OSError:
            pass
def {entry}(*args):
    return "nonce %r, forged %d" % (NONCE, FORGED)
'''


@needs_sandbox
async def test_the_candidate_cannot_read_the_nonce_or_forge_the_report(env):
    task = _task("train", "strings-pipeline")
    code = STEAL_NONCE.format(n=len(task.data["hidden_tests"]), entry=task.data["entry_point"])
    await env.reset(task)
    r = await env.step(ToolCall(name="run_tests", arguments={"code": code}))
    assert "nonce None, forged 0" in r.observation  # what the candidate saw, in the first failure's "left side"
    assert await _submit(env, task, code) == 0.0


@needs_sandbox
async def test_the_candidate_cannot_see_the_expected_values(env):
    # the old harness kept the tests in the candidate's interpreter (sys.modules["__main__"].D)
    task = _task("train", "parsing-report")
    peek = ("import sys, gc\nseen = [o for o in gc.get_objects() if isinstance(o, dict) and 'tests' in o]\n"
            "main = sys.modules.get('__main__')\nprint(len(seen), hasattr(main, 'D'), hasattr(main, 'job'))\n")
    await env.reset(task)
    r = await env.step(ToolCall(name="run_tests", arguments={"code": peek}))
    assert "got '0 False False" in r.observation
    steal = ("import sys\nD = getattr(sys.modules['__main__'], 'D', None) or getattr(sys.modules['__main__'], 'job')\n"
             "inp = sys.stdin.read()\nprint(next(t['stdout'] for t in D['tests'] if t['stdin'] == inp))\n")
    assert await _submit(env, task, steal) == 0.0


@needs_sandbox
async def test_an_object_that_equals_everything_is_refused(env):
    task = _task("train", "strings-pipeline")
    rigged = f"class Any:\n    def __eq__(self, other):\n        return True\ndef {task.data['entry_point']}(s):\n    return Any()\n"
    await env.reset(task)
    r = await env.step(ToolCall(name="run_tests", arguments={"code": rigged}))
    assert "not a plain value" in r.observation
    assert await _submit(env, task, rigged) == 0.0
    subclass = f"class S(str):\n    def __eq__(self, other):\n        return True\ndef {task.data['entry_point']}(s):\n    return S('x')\n"
    assert await _submit(env, task, subclass) == 0.0  # sent as the plain str 'x'


@needs_sandbox
async def test_modules_planted_in_the_session_do_not_reach_the_judge(env):
    task = _task("train", "strings-pipeline")
    plant = ("open('json.py', 'w').write('raise SystemExit(0)')\n"
             "open('ast.py', 'w').write('import os; os._exit(0)')\n")
    wrong = f"import json, ast\ndef {task.data['entry_point']}(s):\n    return 'wrong'\n"
    assert await _submit(env, task, wrong, before=[plant]) == 0.0
    right = "import json, ast\n" + task.data["solution"]
    assert await _submit(env, task, right, before=[plant]) == 1.0


def test_a_report_needs_one_result_per_test():
    line = '@@n@@{"load_error": null, "results": [{"ok": true}, {"ok": true}], "output": ""}\n'
    assert harness.parse_report(line, "@@n@@", 2)["results"] == [{"ok": True}] * 2
    assert harness.parse_report(line, "@@n@@", 1) is None and harness.parse_report(line, "@@n@@", 3) is None
    assert harness.parse_report('@@n@@{"results": 5}\n', "@@n@@", 1) is None


def _custom(tests: list[str], setup: str = "") -> Task:
    return Task(id="custom", env="code-v0", data={
        "entry_point": "f", "kind": "function", "solution": "", "test_setup": setup,
        "hidden_tests": [{"code": c} for c in tests], "public_tests": []})


@needs_sandbox
async def test_plain_values_cross_intact_and_tests_see_the_candidates_exceptions(env):
    code = ("import math\n"
            "def f(kind, x=None):\n"
            "    if kind == 'raise':\n        raise ValueError('bad ' + str(x))\n"
            "    return {'tuple': (1, (2.5, 'a')), 'set': {1, 2}, 'frozen': frozenset('ab'), 'dict': {1: [None, True]},\n"
            "            'bytes': b'\\x00\\xff', 'complex': 1 + 2j, 'nan': math.nan, 'big': 2 ** 100,\n"
            "            'echo': x, 'helper': helper(x)}[kind]\n"
            "def helper(x):\n    return len(x) if isinstance(x, list) else x\n")
    tests = ["assert f('tuple') == (1, (2.5, 'a')) and type(f('tuple')) is tuple",
             "assert f('set') == {1, 2} and f('frozen') == frozenset('ab')",
             "assert f('dict') == {1: [None, True]}",
             "assert f('bytes') == b'\\x00\\xff' and f('complex') == 1 + 2j",
             "import math\nassert math.isnan(f('nan')) and f('big') == 2 ** 100",
             "assert f('echo', (1, {2: 'x'})) == (1, {2: 'x'})",
             "assert helper([1, 2, 3]) == 3",  # a function the candidate defined besides f
             "try:\n    f('raise', 7)\nexcept ValueError as e:\n    assert 'bad 7' in str(e)\nelse:\n    assert False",
             "assert candidate('echo', 1) == 1"]
    await env.reset(_custom(tests, setup="candidate = f"))
    r = await env.step(ToolCall(name="submit", arguments={"code": code}))
    assert r.reward == 1.0, r.observation


@needs_sandbox
async def test_modules_the_candidate_writes_beside_the_judge_are_never_imported(env):
    task = _task("train", "strings-pipeline")
    forge = ("import json, os, sys\nm = sys.modules['__main__']\nos.write(m.REPORT, (m.job['nonce'] + json.dumps("
             "{'load_error': None, 'results': [{'ok': True}] * len(m.job['tests']), 'output': ''}) + '\\n').encode())\n")
    wrong = (f"for name in ('traceback', 'copy', 'linecache', 'ast', 'json'):\n"
             f"    open('../%s.py' % name, 'w').write({forge!r})\n"
             f"def {task.data['entry_point']}(s):\n    return 'wrong'\n")
    assert await _submit(env, task, wrong) == 0.0


@needs_sandbox
async def test_a_candidate_function_named_like_a_builtin_does_not_judge(env):
    code = "def f(x):\n    return 5\ndef abs(x):\n    return 0\n"
    await env.reset(_custom(["assert abs(f(1) - 2) < 1e-9", "assert f(1) == 5"]))
    r = await env.step(ToolCall(name="submit", arguments={"code": code}))
    assert r.reward == 0.5, r.observation


@needs_sandbox
async def test_a_late_reply_never_answers_a_later_call(env):
    # the judge calls f(1) again to show the failing test's left side; that second call outlives its time limit
    code = ("import time\ncalls = [0]\ndef f(x):\n    calls[0] += 1\n    if x == 1 and calls[0] == 2:\n"
            "        time.sleep(3)\n    return x\n")
    await env.reset(_custom(["assert f(1) == 999", "assert f(2) == 2", "assert f(3) == 3"]))
    r = await env.step(ToolCall(name="submit", arguments={"code": code}))
    assert r.reward == pytest.approx(2 / 3), r.observation


@needs_sandbox
async def test_a_garbled_exchange_is_a_load_error_and_big_integers_cross(env):
    garble = "import os\nos.write(4, b'[]\\n')\nos._exit(0)\ndef f():\n    return 1\n"
    await env.reset(_custom(["assert f() == 1"]))
    r = await env.step(ToolCall(name="submit", arguments={"code": garble}))
    assert r.reward == 0.0 and "failed to load" in r.observation, r.observation
    await env.reset(_custom(["assert f() == 10 ** 5000"]))
    r = await env.step(ToolCall(name="submit", arguments={"code": "def f():\n    return 10 ** 5000\n"}))
    assert r.reward == 1.0, r.observation


@needs_sandbox
async def test_a_call_past_the_time_limit_fails_its_test_and_the_next_tests_still_run(env):
    code = "import time\ndef f(x):\n    if x == 1:\n        while True:\n            pass\n    return x\n"
    tests = ["assert f(0) == 0", "assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"]
    await env.reset(_custom(tests))
    r = await env.step(ToolCall(name="submit", arguments={"code": code}))
    assert r.reward == 0.75 and "3/4" in r.observation
