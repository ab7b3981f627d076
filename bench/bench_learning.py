"""Learning results of the RL trainer: held-out success before and after training, GiGPO vs GRPO
at the same budget. Prints figures; asserts nothing.

Default (a few minutes on 2 cores): the tiny random Llama on tiny-doors-v0, GiGPO vs GRPO vs
wrong-sign GiGPO, 150 steps each, held-out success (greedy) every 10 steps.

    .venv/bin/python bench/bench_learning.py

``--household`` (about 1.5 hours on 2 cores, run it deliberately; its RL stage took 70 min in v7):
SmolLM2-135M-Instruct on household easy, held-out easy-test-unseen success measured zero-shot, after
the SFT warm start, and after RL with GiGPO and with GRPO from that same SFT model
(examples/household_{gigpo,grpo}.yaml, same budget and seeds). The zero-shot evaluation runs beside
SFT, and GiGPO beside GRPO, each process on one core (OMP_NUM_THREADS=1), so each RL run gets the
same CPU: one core for its wall time. ``--sequential`` runs them one after another instead.

    .venv/bin/python bench/bench_learning.py --household [--out runs/bench-learning] [--set update.total_steps=30]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from agentgym.store import RunStore
from agentgym.trainers.config import SFTConfig, TrainConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def held_out(run_dir: Path) -> list[tuple[int, dict]]:
    return [(m["step"], {k[5:]: v for k, v in m.items() if k.startswith("eval/")})
            for m in RunStore(run_dir).load_metrics() if any(k.startswith("eval/") for k in m)]


def churn(start_run: Path, run: Path, suite: str, step: int) -> tuple[int, int]:
    """Held-out tasks solved at ``step`` of ``run`` but not at step 0 of ``start_run``, and the reverse."""
    def solved(run_dir: Path, at: int) -> dict[str, bool]:
        return {t.task_id: t.success for t in RunStore(run_dir).load_trajectories(f"eval-{suite}-{at:06d}")}

    before, after = solved(start_run, 0), solved(run, step)
    gained = sum(after[t] and not before.get(t, False) for t in after)
    lost = sum(before[t] and not after.get(t, False) for t in before)
    return gained, lost


def tiny() -> None:
    import importlib.util

    from agentgym.trainers.rl import train
    from agentgym.trainers.tiny import make_tiny_model

    spec = importlib.util.spec_from_file_location("train_tiny", ROOT / "examples" / "train_tiny.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:  # removed on Ctrl-C too
        work = Path(tmp)
        model = make_tiny_model(work / "model")
        print("tiny-doors-v0, tiny Llama, 150 steps, held-out 'test' success (greedy)")
        for label, kw in (("gigpo", {}), ("grpo", {"estimator": "grpo"}), ("gigpo, wrong sign", {"sign": -1})):
            t0 = time.perf_counter()
            cfg = load_config(example.tiny_config(model, work / label.replace(", ", "-").replace(" ", "-"), **kw))
            run = train(cfg, progress=False, log=lambda _line: None)
            curve = [(s, e["test/success"]) for s, e in held_out(run)]
            first90 = next((s for s, v in curve if v >= 0.9), None)
            print(f"{label:>18}: " + " ".join(f"{v:.2f}" for _, v in curve)
                  + f" | first >= 0.9 at step {first90} | {time.perf_counter() - t0:.0f} s")


def household(out: Path, sets: list[str], parallel: bool) -> None:
    """Zero-shot and SFT side by side, then GiGPO and GRPO side by side, one core each."""
    import os
    import subprocess
    import sys

    out.mkdir(parents=True, exist_ok=True)
    base = load_config(ROOT / "examples" / "household_gigpo.yaml", sets)
    suite = base.env.eval_suites[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if parallel else None

    def stages(*names: str) -> None:
        """Run bench stages as child processes: at once with one thread each, or one by one."""
        cmds = [[sys.executable, __file__, "--household", "--out", str(out), "--stage", n,
                 *[f"--set={x}" for x in sets]] for n in names]
        if not parallel:
            for cmd in cmds:
                subprocess.run(cmd, env=env, check=True)
            return
        logs = [open(out / f"{n}.log", "w") for n in names]
        procs = [subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT) for cmd, f in zip(cmds, logs)]
        print(f"running {', '.join(names)} side by side; logs in {out}/<stage>.log")
        codes = [p.wait() for p in procs]
        for f in logs:
            f.close()
        if any(codes):
            raise SystemExit(f"stage failed: {dict(zip(names, codes))}; see the logs in {out}")

    if (out / "sft" / "model").exists() and (out / "zero-shot" / "metrics.jsonl").exists():
        print(f"reusing the zero-shot and SFT results in {out}")  # the RL stage alone, after a stopped run
    else:
        stages("zero-shot", "sft")
    stages("gigpo", "grpo")

    rows = []
    zs = RunStore(out / "zero-shot").load_metrics()[-1]
    rows.append(("zero-shot", zs[f"{suite}/success"], zs["seconds"], zs["cpu_seconds"]))
    sft = held_out(out / "sft")[-1][1]
    t = RunStore(out / "sft").load_metrics()[0]
    rows.append(("after SFT", sft[f"{suite}/success"], t.get("sft_time", float("nan")), float("nan")))
    start = dict(held_out(out / "gigpo")).get(0)
    if start is not None:  # the SFT model evaluated with the RL configs' settings (turn limit ...)
        rows.append(("RL start (step 0)", start[f"{suite}/success"], 0.0, 0.0))
    for name in ("gigpo", "grpo"):
        metrics = RunStore(out / name).load_metrics()
        curve = [(m["step"], m[f"eval/{suite}/success"]) for m in metrics if f"eval/{suite}/success" in m]
        train_s = sum(m.get("time_step", 0.0) for m in metrics)
        cpu_s = sum(m.get("cpu_step", 0.0) for m in metrics)
        rows.append((f"after RL ({name})", curve[-1][1], train_s, cpu_s))
        print(f"{name}: held-out curve {curve}; train success by step "
              + " ".join(f"{m['success']:.2f}" for m in metrics if "success" in m))
        if start is not None:
            gained, lost = churn(out / "gigpo", out / name, suite, curve[-1][0])
            print(f"{name}: against step 0, {gained} held-out tasks newly solved and {lost} no longer solved")
    print(f"\nSmolLM2-135M-Instruct, household easy, held-out {suite} success "
          f"(greedy, {base.eval.max_tasks or 'all'} tasks); time is training only, evaluation excluded")
    for label, success, seconds, cpu in rows:
        print(f"  {label:<18} {success:6.3f}   wall {seconds / 60:5.1f} min   cpu {cpu / 60:5.1f} min")


def household_stage(out: Path, sets: list[str], stage: str) -> None:
    """One stage of :func:`household` (a child process)."""
    from agentgym.trainers.rl import train
    from agentgym.trainers.rollouts import Collector
    from agentgym.trainers.sft import run_sft

    base = load_config(ROOT / "examples" / "household_gigpo.yaml", sets)

    def sft_view(**extra: object) -> SFTConfig:
        keep = {"name", "seed", "policy", "env", "sampling", "context", "rollout", "eval"}
        return load_config({**base.model_dump(mode="json", include=keep), **extra}, kind=SFTConfig)

    if stage == "zero-shot":
        from agentgym.trainers import model as M

        zs = sft_view(run_dir=str(out / "zero-shot"), sft={"data": ["unused"]})
        policy = M.prepare_trainable(zs.policy)[0]  # the RL runs' precision, batch size and cache
        store = RunStore(out / "zero-shot")
        collector = Collector(zs, policy, store)
        t0, c0 = time.perf_counter(), time.process_time()
        ev = collector.evaluate(step=0)
        collector.close()
        store.append_metrics({"step": 0, **ev, "seconds": time.perf_counter() - t0,
                              "cpu_seconds": time.process_time() - c0})
        print("zero-shot", ev)
    elif stage == "sft":
        shutil.rmtree(out / "sft", ignore_errors=True)  # a stopped run's leftovers: a new run refuses them
        run_sft(sft_view(run_dir=str(out / "sft"), sft=base.sft.model_dump(mode="json"),
                         eval={**base.eval.model_dump(mode="json"), "every": 1}))
    else:  # RL from the SFT model, GiGPO or GRPO at the same budget
        shutil.rmtree(out / stage, ignore_errors=True)  # a stopped run's leftovers
        cfg = load_config(ROOT / "examples" / f"household_{stage}.yaml",
                          [*sets, f"policy.model=hf:{out / 'sft' / 'model'}", "sft=null", f"run_dir={out / stage}",
                           # GiGPO's step-0 evaluation measures the common starting point with the RL settings
                           f"eval.at_start={str(stage == 'gigpo').lower()}"])
        assert isinstance(cfg, TrainConfig)
        train(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--household", action="store_true", help="the SmolLM2 household result (hours on CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs") / f"bench-learning-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="override for both RL configs")
    parser.add_argument("--sequential", action="store_true", help="run the stages one after another, all cores each")
    parser.add_argument("--stage", choices=["zero-shot", "sft", "gigpo", "grpo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.household:
        tiny()
    elif args.stage:
        household_stage(args.out, args.sets, args.stage)
    else:
        household(args.out, args.sets, parallel=not args.sequential)


if __name__ == "__main__":
    main()
