"""Learning results of the RL trainer: held-out success before and after training, GiGPO vs GRPO
at the same budget. Prints figures; asserts nothing.

Default (a few minutes on 2 cores): the tiny random Llama on tiny-doors-v0, GiGPO vs GRPO vs
wrong-sign GiGPO, 150 steps each, held-out success (greedy) every 10 steps.

    .venv/bin/python bench/bench_learning.py

``--household`` (hours on a CPU, run it deliberately): SmolLM2-135M-Instruct on household easy,
held-out easy-test-unseen success measured zero-shot, after the SFT warm start, and after RL with
GiGPO and with GRPO from that same SFT model (examples/household_{gigpo,grpo}.yaml, same budget).

    .venv/bin/python bench/bench_learning.py --household [--out runs/bench-learning] [--set update.total_steps=30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from agentgym.store import RunStore
from agentgym.trainers.config import SFTConfig, TrainConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def held_out(run_dir: Path) -> list[tuple[int, dict]]:
    return [(m["step"], {k[5:]: v for k, v in m.items() if k.startswith("eval/")})
            for m in RunStore(run_dir).load_metrics() if any(k.startswith("eval/") for k in m)]


def tiny() -> None:
    import importlib.util

    from agentgym.trainers.rl import train
    from agentgym.trainers.tiny import make_tiny_model

    spec = importlib.util.spec_from_file_location("train_tiny", ROOT / "examples" / "train_tiny.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    work = Path(tempfile.mkdtemp(prefix="bench-learning-"))
    model = make_tiny_model(work / "model")
    print(f"tiny-doors-v0, tiny Llama ({work / 'model'}), 150 steps, held-out 'test' success (greedy)")
    for label, kw in (("gigpo", {}), ("grpo", {"estimator": "grpo"}), ("gigpo, wrong sign", {"sign": -1})):
        t0 = time.perf_counter()
        cfg = load_config(example.tiny_config(model, work / label.replace(", ", "-").replace(" ", "-"), **kw))
        run = train(cfg, progress=False, log=lambda _line: None)
        curve = [(s, e["test/success"]) for s, e in held_out(run)]
        first90 = next((s for s, v in curve if v >= 0.9), None)
        print(f"{label:>18}: " + " ".join(f"{v:.2f}" for _, v in curve)
              + f" | first >= 0.9 at step {first90} | {time.perf_counter() - t0:.0f} s")


def household(out: Path, sets: list[str]) -> None:
    from agentgym.trainers.rl import train
    from agentgym.trainers.rollouts import Collector
    from agentgym.trainers.sft import run_sft

    out.mkdir(parents=True, exist_ok=True)
    base = load_config(ROOT / "examples" / "household_gigpo.yaml", sets)
    suite = base.env.eval_suites[0]
    rows: list[tuple[str, float, float]] = []

    def sft_view(**extra: object) -> SFTConfig:
        keep = {"name", "seed", "policy", "env", "sampling", "context", "rollout", "eval"}
        return load_config({**base.model_dump(mode="json", include=keep), **extra}, kind=SFTConfig)

    # 1. zero-shot
    zs = sft_view(run_dir=str(out / "zero-shot"), sft={"data": ["unused"]})
    from agentgym.trainers import model as M

    device = M.resolve_device(zs.policy.device)
    policy = M.load_policy(zs.policy.model, device=device, dtype=M.resolve_dtype(zs.policy.dtype, device),
                           max_batch_size=zs.policy.generation_batch_size)
    collector = Collector(zs, policy, RunStore(out / "zero-shot"))
    t0 = time.perf_counter()
    ev = collector.evaluate(step=0)
    collector.close()
    rows.append(("zero-shot", ev[f"{suite}/success"], time.perf_counter() - t0))
    print(rows[-1])

    # 2. SFT warm start (the same for both estimators)
    t0 = time.perf_counter()
    sft_cfg = sft_view(run_dir=str(out / "sft"), sft=base.sft.model_dump(mode="json"),
                       eval={**base.eval.model_dump(mode="json"), "every": 1})
    sft_dir = run_sft(sft_cfg)
    rows.append(("after SFT", held_out(sft_dir)[-1][1][f"{suite}/success"], time.perf_counter() - t0))
    print(rows[-1])

    # 3. RL from the SFT model, GiGPO and GRPO at the same budget
    for name in ("gigpo", "grpo"):
        t0 = time.perf_counter()
        cfg = load_config(ROOT / "examples" / f"household_{name}.yaml",
                          [*sets, f"policy.model=hf:{sft_dir / 'model'}", "sft=null", f"run_dir={out / name}",
                           "eval.at_start=false"])
        assert isinstance(cfg, TrainConfig)
        run = train(cfg)
        curve = held_out(run)
        rows.append((f"after RL ({name})", curve[-1][1][f"{suite}/success"], time.perf_counter() - t0))
        print(rows[-1], "curve:", [(s, round(e[f"{suite}/success"], 3)) for s, e in curve])

    print(f"\nSmolLM2-135M-Instruct, household easy, held-out {suite} success (greedy, "
          f"{base.eval.max_tasks or 'all'} tasks)")
    for label, success, seconds in rows:
        print(f"  {label:<18} {success:6.3f}   ({seconds / 60:.1f} min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--household", action="store_true", help="the SmolLM2 household result (hours on CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs") / f"bench-learning-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="override for both RL configs")
    args = parser.parse_args()
    household(args.out, args.sets) if args.household else tiny()


if __name__ == "__main__":
    main()
