"""Rollout engine and policy figures.

    python bench/bench_rollout.py                  # all three (about a minute on an idle 2-core machine)
    python bench/bench_rollout.py --skip-model     # without the transformers generation figure
    python bench/bench_rollout.py --what-if        # the runner with records as slotted dataclasses
    python bench/bench_rollout.py --env sql-v0 --suite test --tasks 100 --skip-model   # another environment

Figures:
- runner throughput: ``RolloutRunner`` with the expert policy on household-v0 (full records:
  steps, messages, state keys, timings; step time limit armed) as a ratio of a bare
  ``reset``/``expert_action``/``step`` loop over the same tasks that records nothing (target >= 0.8),
  and of that loop plus the records the runner keeps (each step's ``Step`` and the conversation,
  built as cheaply as the runner builds them), which separates the cost of keeping token-exact
  records from the cost of the runner's machinery (policy call, context, time limits, episode
  bookkeeping), and of the loop that keeps the ``Step`` records alone (what ``record_messages=False``
  keeps); best of several interleaved passes, by wall clock and by this process's CPU time
  (on a shared machine the CPU figure does not count other processes' turns), with the time the
  garbage collector spent (the records the runner keeps alive give it more to scan);
- memory: peak resident memory of one process holding 1,000 household episodes alive at once
  (each waits 5 ms for its "model" every turn, so all 1,000 are in flight together), measured in
  a fresh subprocess;
- ``--what-if`` (a decision aid, not a target): the same runner with ``Step`` and ``Message`` built as
  slotted dataclasses (the data model stays pydantic everywhere else), with and without its optional
  work (prompt messages, step time limit): how far replacing pydantic records alone would move the
  ratio;
- generation: tokens per second of the transformers policy (SmolLM2-135M) at batch 8 as a ratio
  of batch 1 (target >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import agentgym as ag  # noqa: E402
from agentgym.parsing import parse_action  # noqa: E402
from agentgym.rollout import DEFAULT_SYSTEM_PROMPT, RolloutRunner, format_tool_call  # noqa: E402
from agentgym.types import Message, Step, ToolCall, unchecked  # noqa: E402


async def bare_loop(tasks: list[ag.Task]) -> int:
    steps = 0
    for task in tasks:
        env = ag.make(task.env)
        await env.reset(task)
        while not env.done:
            result = await env.step(env.expert_action())
            steps += 1
            if result.truncated:
                break
        await env.aclose()
    return steps


async def recording_loop(tasks: list[ag.Task], messages_too: bool = True) -> list[list[Step]]:
    """The bare loop plus the records the runner keeps: each step's Step (prompt messages, action,
    result, state key, timings) and the growing conversation (``messages_too``; without it, as the
    runner with ``record_messages=False``). No deadlines, policy or context."""
    episodes = []
    for task in tasks:
        env = ag.make(task.env)
        observation = await env.reset(task)
        steps: list[Step] = []
        state_key, names = env.state_key(), [t.name for t in env.tools]
        messages = [unchecked(Message, {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}),
                    unchecked(Message, {"role": "user", "content": observation})]
        while not env.done:
            t0 = time.perf_counter()
            command = env.expert_action()
            if isinstance(command, ToolCall):  # as the runner records a scripted tool call
                call, command = command, format_tool_call(command)
            else:
                call = env.on_text(parse_action(command, names).text)  # what env.step(command) would parse
            t1 = time.perf_counter()
            result = await env.step(call)
            steps.append(unchecked(Step, {
                "index": len(steps), "state_key": state_key, "messages": messages if messages_too else None,
                "response": command, "action": call, "result": result,
                "timings": {"policy_s": t1 - t0, "env_s": time.perf_counter() - t1}}))
            if result.truncated:
                break
            state_key = result.state_key
            if messages_too:
                messages = [*messages, unchecked(Message, {"role": "assistant", "content": command}),
                            unchecked(Message, {"role": "user", "content": result.observation})]
        await env.aclose()
        episodes.append(steps)
    return episodes


class GCClock:
    """Seconds the garbage collector ran, summed over its collections (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total, self._start = 0.0, 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


GC_CLOCK = GCClock()


def timed(fn) -> tuple[float, float, float, object]:
    """Wall and CPU seconds of ``fn()``, the garbage collector's share, and its result."""
    gc.collect()  # each pass starts from the same heap: the last pass's records are gone
    g0, w0, c0 = GC_CLOCK.total, time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, GC_CLOCK.total - g0, out


def bench_runner(n_tasks: int, repeats: int, env_id: str = "household-v0", suite: str = "train") -> None:
    tasks = ag.load_tasks(env_id, suite)[:n_tasks]
    runners = {"runner": RolloutRunner("expert"),
               "runner, no messages": RolloutRunner("expert", record_messages=False)}
    asyncio.run(bare_loop(tasks))  # warm the world cache for all
    times: dict[str, list[tuple[float, float, float]]] = {"bare loop": [], "bare loop + records": [],
                                                          "bare loop + Steps only": [],
                                                          **{name: [] for name in runners}}
    steps = 0
    for _ in range(repeats):  # interleaved, so a busy spell on a shared machine hits all alike
        wall, cpu, in_gc, steps = timed(lambda: asyncio.run(bare_loop(tasks)))
        times["bare loop"].append((wall, cpu, in_gc))
        wall, cpu, in_gc, kept = timed(lambda: asyncio.run(recording_loop(tasks)))
        times["bare loop + records"].append((wall, cpu, in_gc))
        assert sum(map(len, kept)) == steps
        del kept
        wall, cpu, in_gc, kept = timed(lambda: asyncio.run(recording_loop(tasks, messages_too=False)))
        times["bare loop + Steps only"].append((wall, cpu, in_gc))
        del kept
        for name, runner in runners.items():
            wall, cpu, in_gc, result = timed(lambda: runner.run_sync(tasks))
            times[name].append((wall, cpu, in_gc))
            assert result.summary()["success_rate"] == 1.0
            del result
    # best wall and CPU time of the passes; the collector's time in the pass with the best wall time
    best = {name: (min(r[0] for r in runs), min(r[1] for r in runs), min(runs)[2]) for name, runs in times.items()}
    bw, bc, _ = best["bare loop"]
    rw, rc, _ = best["bare loop + records"]
    sw, sc, _ = best["bare loop + Steps only"]
    print(f"runner throughput (expert, {env_id} {suite}, {len(tasks)} episodes, {steps} steps, best of {repeats}):")
    for name, (w, c, g) in best.items():
        ratio = "" if name == "bare loop" else f"  ratio {bw / w:.2f} wall, {bc / c:.2f} cpu"
        if name == "runner":
            ratio += f" (target >= 0.8); of the recording loop {rw / w:.2f} wall, {rc / c:.2f} cpu"
        elif name in runners:  # the same records as the Steps-only loop
            ratio += f" (target >= 0.8); of the Steps-only loop {sw / w:.2f} wall, {sc / c:.2f} cpu"
        print(f"  {name:22s} {steps / w:7.0f} steps/s wall {steps / c:7.0f} cpu ({w / steps * 1e6:4.0f} us/step, "
              f"{g / steps * 1e6:4.1f} in the garbage collector){ratio}")
    print(f"  runner overhead: {(best['runner'][1] - bc) / steps * 1e6:.0f} us/step of CPU over the bare loop, "
          f"{(best['runner'][1] - rc) / steps * 1e6:.0f} over the recording loop; without messages "
          f"{(best['runner, no messages'][1] - sc) / steps * 1e6:.0f} over the Steps-only loop")


def bench_what_if(n_tasks: int, repeats: int) -> None:
    """The runner with its ``unchecked`` record builder swapped for slotted dataclasses (and back)."""
    import agentgym.rollout as rollout

    @dataclass(slots=True)
    class SlotMessage:
        role: str
        content: str = ""
        tool_calls: object = None
        tool_call_id: object = None
        name: object = None

    @dataclass(slots=True)
    class SlotStep:
        index: int
        agent: str = "agent"
        kind: str = "action"
        segment: int = 0
        state_key: object = None
        messages: object = None
        prompt_ids: object = None
        response: str = ""
        response_ids: object = None
        logprobs: object = None
        action: object = None
        parse_error: object = None
        result: object = None
        timings: dict = field(default_factory=dict)
        reward = Step.reward
        valid = Step.valid

    def slotted(cls: type, values: dict) -> object:
        return SlotStep(**values) if cls is Step else SlotMessage(**values) if cls is Message else unchecked(cls, values)

    tasks = ag.load_tasks("household-v0", "train")[:n_tasks]
    variants = {"all records": {}, "no prompt messages": {"record_messages": False},
                "neither, no step limit": {"record_messages": False, "step_timeout": None}}
    asyncio.run(bare_loop(tasks))
    cpu: dict[str, list[float]] = {}
    steps = 0
    for _ in range(repeats):
        _, bare, _, steps = timed(lambda: asyncio.run(bare_loop(tasks)))
        cpu.setdefault("bare loop", []).append(bare)
        for records in ("pydantic", "slotted"):
            rollout.unchecked = unchecked if records == "pydantic" else slotted
            try:
                for name, options in variants.items():
                    _, spent, _, result = timed(lambda: RolloutRunner("expert", **options).run_sync(tasks))
                    assert result.summary()["success_rate"] == 1.0
                    cpu.setdefault(f"{records:8s} {name}", []).append(spent)
                    del result
            finally:
                rollout.unchecked = unchecked
    bare = min(cpu.pop("bare loop"))
    print(f"what if (expert, household-v0, {steps} steps, best of {repeats}, CPU time): bare loop "
          f"{bare / steps * 1e6:.0f} us/step; runner with its records as")
    for name, runs in cpu.items():
        print(f"  {name:32s} {min(runs) / steps * 1e6:4.0f} us/step  ratio {bare / min(runs):.2f}")


class WaitingExpert:
    """The expert, after a 5 ms wait for a pretend model: keeps every episode in flight at once."""

    uses_rng = False

    def __init__(self) -> None:
        self.envs: weakref.WeakSet = weakref.WeakSet()  # environments of the episodes still running
        self.peak = 0

    async def act(self, env: ag.Environment, rng: object) -> str:
        self.envs.add(env)
        self.peak = max(self.peak, len(self.envs))
        await asyncio.sleep(0.005)
        return env.expert_action()

    async def aclose(self) -> None:
        pass


def bench_memory_child(episodes: int) -> None:
    tasks = ag.load_tasks("household-v0", "train")[:episodes]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    policy = WaitingExpert()
    t0 = time.perf_counter()
    result = RolloutRunner(policy, concurrency=episodes).run_sync(tasks)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steps = sum(t.num_turns for t in result.trajectories)
    print(f"memory: {episodes} household episodes in one process, {policy.peak} alive at once, {steps} steps "
          f"in {wall:.1f} s, success {result.summary()['success_rate']:.0%}")
    print(f"  peak RSS {peak / 1024:.0f} MB (after imports {base / 1024:.0f} MB; "
          f"{(peak - base) / episodes:.0f} KB per episode, records included)")


def bench_generation(new_tokens: int) -> None:
    from agentgym.policies import SamplingParams
    from agentgym.policies.hf import TransformersPolicy, smollm2_path
    from agentgym.types import Message

    t0 = time.perf_counter()
    import torch  # noqa: F401 - timed apart from the model load
    import transformers  # noqa: F401

    imports = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = smollm2_path()
    convert = time.perf_counter() - t0
    t0 = time.perf_counter()
    policy = TransformersPolicy(path, max_batch_size=8)
    load = time.perf_counter() - t0
    topics = ["a lighthouse", "a lost key", "the first snow", "a robot cook", "an old map", "a night train",
              "a small dragon", "a quiet library"]
    convs = [[Message(role="user", content=f"Write a long story about {t}.")] for t in topics]
    params = SamplingParams(temperature=1.0, max_new_tokens=new_tokens, seed=0)
    policy.generate_tokens_sync([policy.render(convs[0])], SamplingParams(max_new_tokens=4))  # warm up
    t0 = time.perf_counter()
    single = [policy.generate_tokens_sync([policy.render(c)], params)[0] for c in convs]
    t1 = time.perf_counter()
    batched = policy.generate_tokens_sync([policy.render(c) for c in convs], params)
    t2 = time.perf_counter()
    rate1 = sum(len(c.token_ids) for c in single) / (t1 - t0)
    rate8 = sum(len(c.token_ids) for c in batched) / (t2 - t1)
    print(f"generation (transformers, SmolLM2-135M, {new_tokens} new tokens, {os.cpu_count()} cores; "
          f"torch and transformers imported in {imports:.2f} s; model cache {path}: ready in {convert:.2f} s, "
          f"loaded in {load:.2f} s):")
    print(f"  batch 1  {rate1:6.1f} tok/s")
    print(f"  batch 8  {rate8:6.1f} tok/s")
    print(f"  ratio    {rate8 / rate1:6.2f}  (target >= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300, help="episodes in the throughput comparison")
    parser.add_argument("--env", default="household-v0", help="environment of the throughput comparison")
    parser.add_argument("--suite", default="train", help="its task suite")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=1000, help="concurrent episodes in the memory figure")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--skip-model", action="store_true", help="leave out the generation figure")
    parser.add_argument("--no-gc", action="store_true",
                        help="throughput with the garbage collector off (its share of the runner's overhead)")
    parser.add_argument("--what-if", action="store_true",
                        help="only the runner with slotted-dataclass records (how far that alone would go)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        bench_memory_child(args.episodes)
        return
    if args.what_if:
        bench_what_if(args.tasks, args.repeats)
        return
    if args.no_gc:
        gc.disable()  # timed() still collects between passes
    bench_runner(args.tasks, args.repeats, args.env, args.suite)
    subprocess.run([sys.executable, __file__, "--memory-child", "--episodes", str(args.episodes)], check=True)
    if not args.skip_model:
        bench_generation(args.new_tokens)


if __name__ == "__main__":
    main()
