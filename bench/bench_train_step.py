"""Time one RL update step of the trainer on SmolLM2-135M-Instruct (CPU by default): forward,
backward and AdamW over synthetic sequences with loss on the last 32 tokens. Prints figures.

    .venv/bin/python bench/bench_train_step.py [--batch 8] [--lengths 128 512] [--lora] [--no-checkpointing] [--autocast bfloat16]
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--model", default="smollm2", help="smollm2 or hf:/path")
    parser.add_argument("--autocast", default=None, help="bfloat16: the forward under torch.autocast (policy.autocast)")
    args = parser.parse_args()

    import torch

    from agentgym.trainers import model as M
    from agentgym.trainers.batching import Sequence
    from agentgym.trainers.config import load_config
    from agentgym.trainers.loss import aggregate, clipped_surrogate, kl_penalty
    from agentgym.trainers.rl import _update

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    policy = M.load_policy(args.model, device=torch.device("cpu"), dtype=torch.float32)
    print(f"load {args.model}: {time.perf_counter() - t0:.1f} s")
    model = policy.model
    if args.lora:
        model = M.add_lora(model, 16, 32, 0.0, "all-linear")
    if not args.no_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: 1.0)
    cfg = load_config({}, [f"update.micro_batch_size={args.micro}", "policy.device=cpu"])
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    for length in args.lengths:
        seqs = []
        for i in range(args.batch):
            ids = rng.integers(0, vocab, size=length).tolist()
            mask = [0.0] * (length - 32) + [1.0] * 32
            seqs.append(Sequence(ids, mask, [float(rng.normal())] * length, [math.nan] * length, i))
        model.train()
        t0 = time.perf_counter()
        out = _update(model, None, seqs, opt, sched, params, cfg, 1, 0, torch.device("cpu"), aggregate=aggregate,
                      clipped_surrogate=clipped_surrogate, kl_penalty=kl_penalty, progress=False,
                      autocast=args.autocast)
        dt = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"{args.batch} x {length} tokens ({'LoRA' if args.lora else 'full'}, autocast {args.autocast}, checkpointing "
              f"{'off' if args.no_checkpointing else 'on'}): {dt:.1f} s/step, {args.batch * length / dt:.0f} tok/s, "
              f"grad norm {out['grad_norm']:.2f}, peak RSS {peak:.1f} GB")


if __name__ == "__main__":
    main()
