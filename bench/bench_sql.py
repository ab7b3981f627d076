"""Benchmark sql-v0: environment steps per second and query latency (SQLite by default).

    python bench/bench_sql.py                     # SQLite, train suite, expert + random policies
    python bench/bench_sql.py --postgres          # the same on a throwaway local PostgreSQL server
    python bench/bench_sql.py --concurrency 16    # many environments on one event loop

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import agentgym as ag
from agentgym.environments.sql import SQLEnv
from agentgym.policies.scripted import ExpertPolicy, RandomPolicy


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def run_policy(policy, tasks, env_kwargs, concurrency: int, seed: int):
    queue: asyncio.Queue = asyncio.Queue()
    for t in tasks:
        queue.put_nowait(t)
    step_times: list[float] = []
    query_times: list[float] = []
    successes = 0

    async def worker(i: int) -> None:
        nonlocal successes
        rng = random.Random(seed + i)
        async with SQLEnv(**env_kwargs) as env:
            while not queue.empty():
                task = queue.get_nowait()
                await env.reset(task)
                while not (env.done or env.turn >= task.max_turns):
                    action = await policy.act(env, rng)
                    t0 = time.perf_counter()
                    await env.step(action)
                    dt = time.perf_counter() - t0
                    step_times.append(dt)
                    if action.name in ("run_query", "submit"):
                        query_times.append(dt)
                successes += env.success

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return time.perf_counter() - start, step_times, query_times, successes


async def raw_query_latency(tasks, env_kwargs, repeats: int) -> list[float]:
    """Latency of the gold queries through ReadOnlyDatabase.query (thread hop included)."""
    times = []
    async with SQLEnv(**env_kwargs) as env:
        for task in tasks:
            await env.reset(task)
            for _ in range(repeats):
                t0 = time.perf_counter()
                await env.db.query(task.data["gold"])
                times.append(time.perf_counter() - t0)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="train")
    parser.add_argument("--episodes", type=int, default=240, help="episodes per policy")
    parser.add_argument("--concurrency", type=int, default=1, help="environments driven at once")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each gold query for the latency figures")
    parser.add_argument("--postgres", action="store_true", help="use a throwaway local PostgreSQL server")
    args = parser.parse_args()

    tasks = ag.load_tasks("sql-v0", args.suite)
    tasks = (tasks * (args.episodes // len(tasks) + 1))[: args.episodes]
    server = None
    env_kwargs: dict = {"backend": "sqlite"}
    if args.postgres:
        from agentgym.tasks.sql import load_postgres
        from agentgym.tasks.sql.build import suite_db_ids
        from agentgym.tools.sql import LocalPostgres

        server = LocalPostgres().start()
        env_kwargs = {"backend": "postgres", "dsn": load_postgres(server.dsn(), suite_db_ids())}
    try:
        backend = env_kwargs["backend"]
        # warm the database cache (first use builds the SQLite files)
        await raw_query_latency(tasks[:1], env_kwargs, 1)
        print(f"sql-v0 on {backend}, suite {args.suite}, {len(tasks)} episodes per policy, "
              f"concurrency {args.concurrency}")
        for policy in (ExpertPolicy(), RandomPolicy()):
            wall, steps, queries, ok = await run_policy(policy, tasks, env_kwargs, args.concurrency, 0)
            print(f"  {policy.name:6s}: {len(steps) / wall:8.0f} steps/s  {len(tasks) / wall:7.1f} episodes/s  "
                  f"success {ok / len(tasks):5.1%}  step p50 {statistics.median(steps) * 1e3:6.2f} ms  "
                  f"p99 {pct(steps, 99) * 1e3:6.2f} ms  query-step p50 {statistics.median(queries) * 1e3:6.2f} ms "
                  f"p99 {pct(queries, 99) * 1e3:6.2f} ms")
        lat = await raw_query_latency(tasks, env_kwargs, args.repeats)
        print(f"  gold query latency ({len(lat)} queries): p50 {statistics.median(lat) * 1e3:.2f} ms  "
              f"p99 {pct(lat, 99) * 1e3:.2f} ms  max {max(lat) * 1e3:.2f} ms")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
