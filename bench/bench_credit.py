"""Time agentgym.credit on a million step rows: 10,000 groups of 8 trajectories, random lengths
and random anchors. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_credit.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from agentgym import credit


def make_batch(n_rows: int, groups: int, per_group: int, states: int, seed: int = 0) -> dict:
    """Rows of `groups` groups of `per_group` trajectories, trajectory by trajectory in time order,
    with random lengths (at least 1) summing to `n_rows`. Anchors are drawn from `states` states per
    group, both as ints and as text state keys; the reward is a sparse success reward at the end."""
    rng = np.random.default_rng(seed)
    n_traj = groups * per_group
    cuts = np.sort(rng.choice(np.arange(1, n_rows), size=n_traj - 1, replace=False))
    traj = np.zeros(n_rows, dtype=np.int64)
    traj[cuts] = 1
    traj = np.cumsum(traj)
    group = traj // per_group
    state = rng.integers(0, states, size=n_rows)
    reward = np.zeros(n_rows)
    last = np.append(cuts - 1, n_rows - 1)
    reward[last] = 10.0 * (rng.random(n_traj) < 0.5)
    return dict(group=group, traj=traj, anchor_int=group * states + state,
                anchor_str=[f"room {s} | holding nothing" for s in state], reward=reward,
                valid=rng.random(n_rows) > 0.05, longest=int(np.bincount(traj).max()))


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.rows < 80_000:
        parser.error(f"--rows must be at least 80000 (a row for each of the 80,000 trajectories), got {args.rows}")

    b = make_batch(args.rows, groups=10_000, per_group=8, states=50)
    n = len(b["reward"])
    print(f"{n:,} rows, {b['traj'].max() + 1:,} trajectories in 10,000 groups of 8 (longest {b['longest']} steps), "
          f"50 anchor states per group; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"best of {args.repeat} runs, wall-clock seconds:")
    cases = {
        "grpo (std, trajectory stats)": lambda: credit.grpo(b["group"], b["traj"], b["reward"]),
        "grpo (rows stats, penalty)": lambda: credit.grpo(b["group"], b["traj"], b["reward"], episode_stats="rows",
                                                          valid=b["valid"], invalid_penalty=0.1),
        "rloo": lambda: credit.rloo(b["group"], b["traj"], b["reward"]),
        "discounted_returns": lambda: credit.discounted_returns(b["traj"], b["reward"], 0.95),
        "gigpo, int anchors": lambda: credit.gigpo(b["group"], b["traj"], b["anchor_int"], b["reward"]),
        "gigpo, str anchors": lambda: credit.gigpo(b["group"], b["traj"], b["anchor_str"], b["reward"]),
        "gigpo, str anchors, penalty, per agent": lambda: credit.gigpo(
            b["group"], b["traj"], b["anchor_str"], b["reward"], valid=b["valid"], invalid_penalty=0.1,
            agent_ids=b["traj"] % 2),
    }
    for name, fn in cases.items():
        print(f"  {name:<42} {best_of(fn, args.repeat):.3f}")


if __name__ == "__main__":
    main()
