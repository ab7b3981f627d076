"""Replay server figures: how fast ``agentgym replay`` answers for a run of many episodes.

    python bench/bench_replay.py                 # a generated RL-style run (about a minute)
    python bench/bench_replay.py RUN_DIR         # a run directory of yours

Figures, over real HTTP on 127.0.0.1: the first ``/api/run`` (every trajectory file parsed), the same
request again (cached), the first episode of a training batch (its advantages computed) and the next
one; and the process's peak resident memory. The generated run holds 4 training batches of 200
random-policy household episodes (8 samples of 25 tasks each) under GiGPO with milestone bonuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import aiohttp  # noqa: E402

import agentgym as ag  # noqa: E402
from agentgym.replay import ReplayServer  # noqa: E402
from agentgym.rollout import RolloutRunner  # noqa: E402
from agentgym.store import RunStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_run(root: Path) -> Path:
    from agentgym.trainers.config import load_config

    store = RunStore(root)
    store.write_config(load_config(ROOT / "examples" / "household_quickstart.yaml",
                                   ["credit.milestones=bonus", f"run_dir={root}"]))
    tasks = ag.load_tasks("household-v0", "easy-train")
    for step in range(1, 5):
        batch = tasks[25 * (step - 1):25 * step]
        RolloutRunner("random", n=8, max_turns=10, store=store, store_name=f"train-{step:06d}", seed=step).run_sync(batch)
        store.append_metrics({"step": step, "rows": 0})
    return root


async def measure(run_dir: Path) -> None:
    async with ReplayServer(run_dir, port=0) as server, aiohttp.ClientSession() as session:
        async def get(path: str) -> tuple[float, object]:
            t0 = time.perf_counter()
            async with session.get(server.url + path) as response:
                body = await response.json()
                assert response.status == 200, body
            return time.perf_counter() - t0, body

        first, run = await get("api/run")
        cached, _ = await get("api/run")
        files = run["files"]  # type: ignore[index]
        episodes = sum(f["episodes"] for f in files)
        size = sum(p.stat().st_size for p in (run_dir / "trajectories").glob("*.jsonl"))
        print(f"replay ({run_dir}: {len(files)} trajectory files, {episodes} episodes, {size / 1e6:.1f} MB):")
        print(f"  /api/run   first {first * 1000:7.1f} ms (every file parsed), again {cached * 1000:6.1f} ms")
        batch = next((f["name"] for f in files if f["kind"] == "train"), files[0]["name"] if files else None)
        if batch is not None:
            one, episode = await get(f"api/files/{batch}/0")
            two, _ = await get(f"api/files/{batch}/1")
            print(f"  episode    first {one * 1000:7.1f} ms ({batch}; {episode['advantage_note'] or 'no advantages'}), "  # type: ignore[index]
                  f"next {two * 1000:6.1f} ms")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run directory (default: generate one)")
    args = parser.parse_args()
    if args.run_dir is not None:
        asyncio.run(measure(args.run_dir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_dir = make_run(Path(tmp) / "run")
        print(f"generated a run in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        asyncio.run(measure(run_dir))


if __name__ == "__main__":
    main()
