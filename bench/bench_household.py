"""Household speed, single process: expert steps per second and reset time; optionally success rates.

    python bench/bench_household.py                 # speed (about 15 s)
    python bench/bench_household.py --success       # also expert and random success on every suite

Figures:
- reset: ``await env.reset(task)`` per task, cold (world built from the task data) and warm (the
  world cache holds it, as when a group of samples shares a task);
- steps/s through ``Environment.step`` with the expert's plain-text command (parsing, tool
  validation, StepResult and state key included; the expert's own time too), and with a ToolCall;
- steps/s of the bare simulator (the world alone, for comparison with the API's overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import agentgym as ag
from agentgym import registry
from agentgym.environments.household.env import world_of
from agentgym.environments.household.sim import Simulator
from agentgym.environments.household.world import build_world, layout
from agentgym.types import ToolCall


async def bench_resets(env: ag.Environment, tasks: list[ag.Task]) -> tuple[float, float]:
    build_world.cache_clear()
    layout.cache_clear()
    cold = []
    for task in tasks:
        t0 = time.perf_counter()
        await env.reset(task)
        cold.append(time.perf_counter() - t0)
    warm = []
    for task in tasks:
        t0 = time.perf_counter()
        await env.reset(task)
        warm.append(time.perf_counter() - t0)
    return statistics.mean(cold), statistics.mean(warm)


async def bench_steps(env: ag.Environment, tasks: list[ag.Task], tool_calls: bool, repeats: int) -> tuple[float, float]:
    """Expert steps per second, by wall clock and by this process's CPU time; best of ``repeats`` passes.

    On a shared machine the CPU-time figure is the one that does not count other processes' turns.
    """
    wall_rates, cpu_rates = [], []
    for _ in range(repeats):
        steps, wall, cpu = 0, 0.0, 0.0
        for task in tasks:
            await env.reset(task)
            w0, c0 = time.perf_counter(), time.process_time()
            while not env.done:
                command = env.expert_action()
                await env.step(ToolCall(name="act", arguments={"command": command}) if tool_calls else command)
                steps += 1
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
        wall_rates.append(steps / wall)
        cpu_rates.append(steps / cpu)
    return max(wall_rates), max(cpu_rates)


def bench_simulator(tasks: list[ag.Task], repeats: int) -> tuple[float, float]:
    sim = Simulator()
    worlds = [world_of(t) for t in tasks]
    wall_rates, cpu_rates = [], []
    for _ in range(repeats):
        steps, wall, cpu = 0, 0.0, 0.0
        for world in worlds:
            sim.load(world)
            w0, c0 = time.perf_counter(), time.process_time()
            while not sim.success():
                sim.execute(sim.expert_action())
                sim.state_key()
                steps += 1
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
        wall_rates.append(steps / wall)
        cpu_rates.append(steps / cpu)
    return max(wall_rates), max(cpu_rates)


async def success_rates(seed: int = 0) -> None:
    env = ag.make("household-v0")
    print(f"{'suite':18} {'tasks':>6} {'expert':>7} {'random':>7}")
    for suite in registry.suites("household-v0"):
        tasks = ag.load_tasks("household-v0", suite)
        rates = []
        for policy in ("expert", "random"):
            rng = random.Random(seed)
            wins = 0
            for task in tasks:
                await env.reset(task)
                result = None
                while result is None or not (result.terminated or result.truncated):
                    result = await env.step(env.expert_action() if policy == "expert" else env.random_action(rng))
                wins += env.success
            rates.append(wins / len(tasks))
        print(f"{suite:18} {len(tasks):6d} {rates[0]:7.1%} {rates[1]:7.1%}")


async def main() -> None:
    parser = argparse.ArgumentParser(description="household-v0 speed (and success rates)")
    parser.add_argument("--suite", default="train", help="suite to time on")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per timing pass")
    parser.add_argument("--repeats", type=int, default=5, help="timing passes (the best is reported)")
    parser.add_argument("--success", action="store_true", help="also report expert and random success per suite")
    args = parser.parse_args()

    tasks = ag.load_tasks("household-v0", args.suite)[: args.tasks]
    env = ag.make("household-v0")
    cold, warm = min([await bench_resets(env, tasks) for _ in range(3)], key=sum)
    print(f"{args.suite}, {len(tasks)} tasks; best of {args.repeats} passes; steps/s by wall clock (by CPU time)")
    print(f"reset: {cold * 1e3:.3f} ms cold (world built from task data), {warm * 1e3:.3f} ms warm (world cached)")
    for label, tool_calls in (("text command", False), ("ToolCall", True)):
        wall, cpu = await bench_steps(env, tasks, tool_calls, args.repeats)
        print(f"expert steps/s through Environment.step, {label}: {wall:,.0f} ({cpu:,.0f})")
    wall, cpu = bench_simulator(tasks, args.repeats)
    print(f"expert steps/s, bare simulator: {wall:,.0f} ({cpu:,.0f})")
    if args.success:
        await success_rates()


if __name__ == "__main__":
    asyncio.run(main())
