"""Process sandbox latency and throughput: ``python bench/bench_sandbox.py [--runs N]``.

Prints p50 and p99 latency of running ``print(1)`` in the process sandbox (one-shot runs), with
and without the warm pool, each as a ratio of a bare ``python3 -c 'print(1)'`` subprocess of the
same interpreter (target: at most 1.5x at p50); the same in one session; then the throughput of
16 concurrent runs.
Bare runs and sandbox runs alternate, so a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from agentgym.sandboxes import ProcessSandbox


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _bare(python: str, flags: list[str]) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(python, *flags, "-c", "print(1)", stdout=asyncio.subprocess.PIPE)
    await proc.communicate()
    return time.perf_counter() - start


async def _sandboxed(sb: ProcessSandbox) -> float:
    start = time.perf_counter()
    result = await sb.run_python("print(1)")
    elapsed = time.perf_counter() - start
    assert result.stdout == "1\n", result
    return elapsed


async def latency(runs: int, warm: int, python: str, pause: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bare": [], "bare -I -S": [], "sandbox": []}
    async with ProcessSandbox(warm=warm) as sb:
        await _sandboxed(sb)  # start-up check and first pool fill are not part of the figure
        for _ in range(runs):
            if warm:
                await asyncio.sleep(pause)  # an agent's turn: the pool refills meanwhile
            times["sandbox"].append(await _sandboxed(sb))
            times["bare"].append(await _bare(python, []))
            times["bare -I -S"].append(await _bare(python, ["-I", "-S"]))
    return times


async def session_latency(runs: int, pause: float) -> list[float]:
    """Seconds per ``print(1)`` in one session (its work directory is a host folder, measured during each call)."""
    async with ProcessSandbox(warm=2) as sb, sb.session() as session:
        times = []
        for i in range(runs + 1):
            await asyncio.sleep(pause)
            start = time.perf_counter()
            result = await session.run_python("print(1)")
            assert result.stdout == "1\n", result
            if i:  # the first call starts the session
                times.append(time.perf_counter() - start)
        return times


async def throughput(total: int, concurrency: int, warm: int) -> float:
    async with ProcessSandbox(warm=warm) as sb:
        await _sandboxed(sb)
        queue = list(range(total))

        async def worker() -> None:
            while queue:
                queue.pop()
                await _sandboxed(sb)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="runs per configuration")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between warm runs (pool refill)")
    args = parser.parse_args()
    python = sys.executable
    print(f"interpreter: {python}")
    for warm in (0, 2):
        t = await latency(args.runs, warm, python, args.pause)
        label = "warm pool (warm=2)" if warm else "no warm pool"
        sb50, sb99 = _pct(t["sandbox"], .5), _pct(t["sandbox"], .99)
        print(f"{label:>20}: sandbox p50 {sb50 * 1e3:6.1f} ms  p99 {sb99 * 1e3:6.1f} ms")
        for base in ("bare", "bare -I -S"):
            b50, b99 = _pct(t[base], .5), _pct(t[base], .99)
            print(f"{'':>20}  vs {base + ' python3 -c':<22} p50 {b50 * 1e3:6.1f} ms ({sb50 / b50:4.2f}x)  "
                  f"p99 {b99 * 1e3:6.1f} ms ({sb99 / b99:4.2f}x)")
    session = await session_latency(args.runs, args.pause)
    print(f"{'session (warm=2)':>20}: call p50 {_pct(session, .5) * 1e3:6.1f} ms  p99 {_pct(session, .99) * 1e3:6.1f} ms")
    for warm in (0, 16):
        rate = await throughput(max(args.runs, 64), 16, warm)
        print(f"throughput, 16 concurrent, warm={warm:<2}: {rate:6.1f} runs/s")
    print(f"(median of {args.runs} runs each; load average {statistics.mean(_loadavg()):.1f})")


def _loadavg() -> list[float]:
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]


if __name__ == "__main__":
    asyncio.run(main())
