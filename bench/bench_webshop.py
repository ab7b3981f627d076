"""Benchmark webshop-v0: expert episodes through the rollout runner, as actions per second, at several
concurrencies, with the CPU time Chromium and its Playwright driver spent per action.

    python bench/bench_webshop.py                      # 24 test-seen episodes at concurrency 1, 4 and 8
    python bench/bench_webshop.py --tasks 48 --concurrency 1 16

Prints figures; asserts nothing. Run it on an idle machine: Chromium's share is read from /proc.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import agentgym as ag
from agentgym.rollout import RolloutRunner


def browser_cpu_seconds() -> float:
    """CPU seconds so far of every Chromium and Playwright driver (node) process on the machine, with their
    reaped children's (the renderer of a closed browser context has exited by the time we look)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        if "chrom" in name or name.startswith("node") or name == "headless_shell":
            fields = text[text.rindex(")") + 2:].split()
            total += sum(map(int, fields[11:15])) / tick  # utime, stime, cutime, cstime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    tasks = ag.load_tasks("webshop-v0", "test-seen")[:args.tasks]
    RolloutRunner("expert").run_sync(tasks[:2])  # Chromium and the shop's server start here, not in the figures
    print(f"webshop-v0, expert, {len(tasks)} test-seen episodes, {os.cpu_count()} cores:")
    for concurrency in args.concurrency:
        browser0, python0, wall0 = browser_cpu_seconds(), time.process_time(), time.perf_counter()
        result = RolloutRunner("expert", concurrency=concurrency).run_sync(tasks)
        wall = time.perf_counter() - wall0
        browser, python = browser_cpu_seconds() - browser0, time.process_time() - python0
        steps = [s for t in result.trajectories for s in t.steps]
        env_ms = statistics.median(s.timings["env_s"] for s in steps) * 1000
        print(f"  concurrency {concurrency:3d}: {len(steps) / wall:5.1f} actions/s, median action {env_ms:5.0f} ms, "
              f"CPU per action {browser / len(steps) * 1000:4.0f} ms Chromium + driver, "
              f"{python / len(steps) * 1000:3.0f} ms this process; success {result.summary()['success_rate']:.0%}")


if __name__ == "__main__":
    main()
