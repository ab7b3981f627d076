"""Benchmark environments in Ray actors (RayEnvPool) against the same rollouts in-process.

    python bench/bench_ray_envs.py                                 # household-v0, 200 expert episodes, 1 and 2 hosts
    python bench/bench_ray_envs.py --env webshop-v0 --tasks 40 --concurrency 8 --hosts 2

Prints, for in-process and for each host count, the wall time, environment steps a second and,
with hosts, the wall time each remote call adds on average (reset, step, the expert's hook, close).
Asserts nothing. A local Ray starts for each host count; its start-up is not counted.
"""

from __future__ import annotations

import argparse
import time

import agentgym as ag
from agentgym.rollout import RolloutRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="household-v0")
    parser.add_argument("--suite", default="test-unseen")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    from agentgym.trainers.ray_envs import RayEnvPool

    tasks = ag.load_tasks(args.env, args.suite)[:args.tasks]
    RolloutRunner("expert", concurrency=args.concurrency).run_sync(tasks[:2])  # warm caches (a browser, a world)
    start = time.perf_counter()
    local = RolloutRunner("expert", concurrency=args.concurrency).run_sync(tasks)
    base = time.perf_counter() - start
    steps = sum(len(t.steps) for t in local.trajectories)
    print(f"{args.env}: {len(tasks)} expert episodes, {steps} steps, concurrency {args.concurrency}")
    print(f"  in-process        {base:7.2f} s  {steps / base:8.0f} steps/s  success {local.summary()['success_rate']:.0%}")
    for hosts in args.hosts:
        with RayEnvPool(hosts=hosts, num_cpus=0) as pool:  # ready before the clock starts
            factory = pool.envs(args.env)
            RolloutRunner("expert", env=factory, concurrency=args.concurrency).run_sync(tasks[:2])
            start = time.perf_counter()
            remote = RolloutRunner("expert", env=factory, concurrency=args.concurrency).run_sync(tasks)
            wall = time.perf_counter() - start
        calls = 2 * steps + 2 * len(tasks)  # a step and the expert's hook per turn; reset and close
        print(f"  {hosts} host{'s' if hosts > 1 else ' '}           {wall:7.2f} s  {steps / wall:8.0f} steps/s  "
              f"success {remote.summary()['success_rate']:.0%}  {(wall - base) / calls * 1e3:.2f} ms added per call "
              f"(wall, {calls} calls, {args.concurrency} at once)")

if __name__ == "__main__":
    main()
