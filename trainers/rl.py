"""The RL trainer: collect groups, assign credit, build token batches, update, evaluate, checkpoint.

Read :func:`_train` (what :func:`train` runs once its inputs are checked) top to bottom; it is the
algorithm. One training step k:

1. **Rollout.** Sample ``tasks_per_step`` training tasks (seeded by ``(seed, k)``, so a resumed
   run sees the same tasks) and run ``group_size`` episodes of each with the current policy,
   capped at the horizon ``H(k)`` (docs/ALGORITHMS.md §6). Trajectories stream into the run directory.
2. **Credit.** ``agentgym.credit.compute`` turns rewards into one advantage per step row
   (GiGPO: ``A = A_E + omega * A_S``; GRPO; RLOO; ...), computed before any batching.
3. **Token batches.** Each step's sampled ``response_ids`` carry its advantage; everything else
   is masked. Append-only contexts are forwarded once per trajectory (``batching``).
4. **Update.** ``ppo_epochs`` passes of ``mini_batches`` optimizer updates, each accumulating
   micro-batches: clipped surrogate with dual-clip, ``− c_ent·H``, ``+ β·KL(π‖π_ref)``
   (docs/ALGORITHMS.md §8), gradient clipping, AdamW.
5. **Log** a metrics line and append it to ``metrics.jsonl``; **checkpoint** every
   ``checkpoint.every`` steps (atomically); then **evaluate** on held-out suites every
   ``eval.every`` steps, so a kill during a long evaluation keeps the trained model.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np

from agentgym._heap import trim_heap
from agentgym.errors import ConfigError
from agentgym.store import RunStore, claim_run_dir, read_run_config, writing
from agentgym.trainers import checkpoint as ckpt
from agentgym.trainers.batching import BatchStats, Sequence, build_sequences, split
from agentgym.trainers.config import TrainConfig, as_config
from agentgym.trainers.rollouts import Collector, check_inputs, progress_bar, rollout_metrics, training_tasks
from agentgym.types import Trajectory

Logger = Callable[[str], None]


def train(config: TrainConfig | dict[str, Any] | str | Path, *, resume: str | Path | None = None, policy: Any = None,
          log: Logger | None = None, progress: bool = True) -> Path:
    """Run RL training as configured (a config, or a dict or YAML path of one); returns the run directory.

    ``resume`` names a run directory: model, optimizer, RNG states, step counter and horizon stage
    come from its newest checkpoint, and trajectories and metrics written after that checkpoint
    are discarded, so the resumed run ends with the same steps and no duplicated records.
    ``policy`` is an already loaded TransformersPolicy (tests); otherwise ``config.policy.model``
    is loaded. Another process training the same run directory makes this fail at once.
    """
    from agentgym.trainers import model as M

    # ---- setup --------------------------------------------------------------------------------
    config = as_config(config, TrainConfig)
    config.env.load_plugins()
    # before the model loads and the run directory appears; a resumed run may be past its SFT data
    check_inputs(config, train_suite=True, sft_data=resume is None)
    sft_data = None
    if resume is None and config.sft is not None and config.sft.data:  # bad data fails before the model loads
        from agentgym.trainers.sft import check_samples, load_trajectories

        sft_data = load_trajectories(config.sft.data)
        check_samples(sft_data, config.sft.only_successful)
    if policy is None:
        M.check_trainable(config.policy.model)
    if resume is not None:
        check_resumable(Path(resume))
        run_dir = Path(resume)
    else:
        run_dir = new_run_dir(config)
        refuse_used_run_dir(run_dir)  # before anything is created in someone else's directory
        RunStore(run_dir)  # creates it, or says why it cannot
    from agentgym.policies.hf import hf_bars

    with writing(run_dir), hf_bars(progress):
        if resume is None:
            refuse_used_run_dir(run_dir)
        return _train(config, run_dir, resume is not None, sft_data, policy,
                      say=log or _console_logger(), progress=progress)


def _train(config: TrainConfig, run_dir: Path, resuming: bool, sft_data: Any, policy: Any, *, say: Logger,
           progress: bool) -> Path:
    """:func:`train` once its inputs are checked and it holds the run directory."""
    import torch

    from agentgym.trainers import model as M
    from agentgym.trainers.loss import aggregate, clipped_surrogate, kl_penalty

    store = RunStore(run_dir)
    start_step, state = 0, {}
    latest = ckpt.latest_checkpoint(store.checkpoint_dir) if resuming else None
    changes: dict[str, tuple[Any, Any]] = {}
    if not resuming:
        store.write_config(config_record(config))
    else:  # config.yaml is rewritten only once the checkpoint has loaded: a failed resume changes nothing
        config = config.model_copy(update={"run_dir": str(run_dir)})  # a CONFIG file given with --resume names none
        saved = store.read_config()
        if saved:  # a run without config.yaml has nothing to compare with
            changes = config_changes({**saved, "run_dir": str(run_dir)}, config_record(config))
        _check_resume(changes, latest, config)
    _seed_everything(config.seed)
    # the policy samples with these weights; we update them in place
    policy, model, device, pad_id = M.prepare_trainable(config.policy, policy)
    tokenizer = policy.tokenizer
    ref = M.frozen_copy(model) if config.loss.use_kl_loss and not config.policy.lora.enable else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, betas=config.optim.betas, eps=config.optim.eps,
                                  weight_decay=config.optim.weight_decay)
    updates_per_step = config.update.ppo_epochs * config.update.mini_batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config, updates_per_step * config.update.total_steps))

    if latest is not None:
        state = ckpt.load_checkpoint(latest, model=model, optimizer=optimizer, scheduler=scheduler)
        _follow_schedule(optimizer, scheduler, config.optim.lr)
        start_step = int(state["step"])
        _discard_after(store, start_step)
        say(f"resumed {run_dir} from {latest.name} (step {start_step}, horizon stage {state.get('horizon_stage', 0)})")
        if start_step == config.update.total_steps:
            say(f"the run has finished its {start_step} steps; to train on, raise update.total_steps "
                f"(--set update.total_steps={start_step + 10})")
    elif resuming:
        _discard_after(store, -1)
        say(f"no checkpoint in {run_dir}: starting it again from step 0")
    if resuming:
        store.write_config(config_record(config))
    if changes:  # config.yaml holds the new settings; the steps before ran with the old ones
        store.append_config_change({"step": start_step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changes": changes})
        say(f"config changed from step {start_step + 1} on (recorded in {store.config_changes_path.name}): "
            + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    collector = Collector(config, policy, store, progress=progress)
    try:
        if config.sft is not None and not state.get("sft_done", False):
            from agentgym.trainers.sft import collect_expert, load_trajectories, sft_train

            if config.eval.every and config.eval.at_start:
                zero = collector.evaluate(step=0, tag="before-sft")
                store.append_metrics({"step": 0, "phase": "sft", **{f"eval_before_sft/{k}": v for k, v in zero.items()}})
                say("before SFT: " + "  ".join(f"{k} {v:.3f}" for k, v in zero.items()))
            say("SFT warm start")
            data = sft_data if sft_data is not None else (
                load_trajectories(config.sft.data) if config.sft.data
                else collect_expert(config, store, progress=progress, env=collector.env_factory()))
            sft_metrics = sft_train(policy, model, config.sft, device=device, pad_id=pad_id, seed=config.seed, log=say,
                                    tool_schema=config.rollout.tool_schema,
                                    progress=progress, trajectories=data)
            store.append_metrics({"step": 0, "phase": "sft", **sft_metrics})
            state["sft_done"] = True
            ckpt.save_checkpoint(store.checkpoint_dir, 0, model=model, tokenizer=tokenizer, optimizer=optimizer,
                                 scheduler=scheduler, state={"horizon_stage": 0, "sft_done": True},
                                 keep_last=config.checkpoint.keep_last)

        train_tasks = training_tasks(config)
        # evaluations run after their step's checkpoint: one a kill cut short runs again here
        if _eval_due(config, start_step) and start_step not in _evaluated_steps(store):
            _log_eval(store, say, start_step, collector.evaluate(step=start_step))

        # ---- training steps -----------------------------------------------------------------------
        for step in range(start_step + 1, config.update.total_steps + 1):
            t_start, cpu_start = time.perf_counter(), time.process_time()

            # 1. rollout: groups of the current policy, capped at the horizon H(k)
            horizon = config.horizon_at(step)
            tasks, trajectories, sampled, sampling = _sample_step(collector, train_tasks, config, step, horizon)
            t_rollout = time.perf_counter() - t_start

            # 2. credit assignment: one advantage per (trajectory, step) row
            advantages, row_mask = compute_advantages(trajectories, config, tasks)
            if config.update.advantage_sign < 0:  # deliberate sign flip for the negative-control test
                advantages = {row: -a for row, a in advantages.items()}

            # 3. token batches: sampled tokens only, append-only chains forwarded once
            stats = BatchStats()
            seqs = build_sequences(trajectories, advantages, row_mask, train_agents=config.update.train_agents,
                                   max_len=config.update.max_seq_len, stats=stats)

            # 4. update
            t_update = time.perf_counter()
            model.train()
            upd = _update(model, ref, seqs, optimizer, scheduler, params, config, step, pad_id, device,
                          aggregate=aggregate, clipped_surrogate=clipped_surrogate, kl_penalty=kl_penalty,
                          progress=progress, autocast=policy.autocast)
            model.eval()
            trim_heap()  # the update's activations: without this, two runs side by side outgrew 24 GB
            t_update = time.perf_counter() - t_update

            # 5. log, evaluate, checkpoint
            record = {"step": step, "horizon": horizon, **rollout_metrics(sampled), **sampling, **upd,
                      "sequences": stats.sequences, "rows": stats.rows, "merged_rows": stats.merged_rows,
                      "loss_tokens": stats.loss_tokens, "dropped_long": stats.dropped_long,
                      "time_rollout": t_rollout, "time_update": t_update,
                      "time_step": time.perf_counter() - t_start, "cpu_step": time.process_time() - cpu_start,
                      "max_rss_mb": _max_rss_mb(),
                      "adv_mean": float(np.mean(list(advantages.values()))) if advantages else 0.0,
                      "adv_abs": float(np.mean(np.abs(list(advantages.values())))) if advantages else 0.0}
            idle = idle_reason(record, trajectories, config)
            if idle:
                record["idle"] = idle
            store.append_metrics(record)
            say(_metrics_line(record, config.update.total_steps))
            if (config.checkpoint.every and step % config.checkpoint.every == 0) or \
                    (step == config.update.total_steps and config.checkpoint.save_final):
                ckpt.save_checkpoint(store.checkpoint_dir, step, model=model, tokenizer=tokenizer, optimizer=optimizer,
                                     scheduler=scheduler, keep_last=config.checkpoint.keep_last,
                                     state={"horizon_stage": config.horizon_stage(step),
                                            "sft_done": state.get("sft_done", False)})
            if _eval_due(config, step):
                _log_eval(store, say, step, collector.evaluate(step=step))
    finally:
        collector.close()
    return run_dir


def config_record(config: TrainConfig) -> dict[str, Any]:
    """The config as written to RUN_DIR/config.yaml; loading it back gives the same config."""
    return config.model_dump(mode="json")


# what the checkpoint's weights and optimizer state were made for: another value cannot load them;
# and the environment, whose metrics, evaluations and task draws the run's steps would otherwise mix
_FIXED_ON_RESUME = ("policy.model", "policy.lora.enable", "policy.lora.r", "policy.lora.target_modules", "env.id")


def _same_model(old: Any, new: Any) -> bool:
    """Whether two ``policy.model`` values name one model: the same name, or one directory by two paths."""
    def directory(value: Any) -> Path | None:
        text = str(value).removeprefix("hf:")
        return Path(text).expanduser() if Path(text).expanduser().is_dir() else None

    a, b = directory(old), directory(new)
    return a is not None and b is not None and a.resolve() == b.resolve()


def _check_resume(changes: dict[str, tuple[Any, Any]], latest: Path | None, config: TrainConfig) -> None:
    """Refuse, before the model loads, a resume whose changed settings the checkpoint cannot follow."""
    import json

    fixed = [key for key in _FIXED_ON_RESUME if key in changes] if latest is not None else []
    fixed = [key for key in fixed if not (key == "policy.model" and _same_model(*changes[key]))]
    if fixed:
        old, new = changes[fixed[0]]
        held = "was trained on the old environment" if fixed[0] == "env.id" else "holds weights for the old value"
        raise ConfigError(f"{fixed[0]} cannot change when a run resumes ({old!r} -> {new!r}): its checkpoint {held}; "
                          "start a new run instead (policy.model may name the old run's checkpoint)")
    done = json.loads((latest / "trainer_state.json").read_text(encoding="utf-8"))["step"] if latest else 0
    if config.update.total_steps < done:
        raise ConfigError(f"update.total_steps={config.update.total_steps}, but the run is already at step {done}")


def _follow_schedule(optimizer: Any, scheduler: Any, lr: float) -> None:
    """Put the optimizer on this config's learning-rate schedule where the resumed run stands.

    The checkpoint's scheduler state holds the old base rate, and the optimizer the old schedule's
    current rate: without this, a resume with another ``optim.lr`` or ``update.total_steps`` would
    keep the old rate (or spend its first step at it). For an unchanged config it changes nothing.
    """
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, fn in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = lr
        group["lr"] = lr * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between two config records, with (old, new) values."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_changes(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


# ---- credit -------------------------------------------------------------------------------------

def compute_advantages(trajectories: list[Trajectory], config: TrainConfig, tasks: list | None = None) -> tuple[dict, dict]:
    """Advantages and loss masks per ``(trajectory index, step index)`` row via ``agentgym.credit``."""
    from agentgym.trainers.rollouts import credit_rows

    return credit_rows(trajectories, config.credit, tasks)


# ---- update -------------------------------------------------------------------------------------

def _update(model: Any, ref: Any, seqs: list[Sequence], optimizer: Any, scheduler: Any, params: list, config: TrainConfig,
            step: int, pad_id: int, device: Any, *, aggregate: Any, clipped_surrogate: Any, kl_penalty: Any,
            progress: bool, autocast: str | None = None) -> dict[str, float]:
    """PPO epochs over mini-batches of ``seqs``; returns the update metrics."""
    import torch

    from agentgym.trainers import model as M
    from agentgym.trainers.loss import gspo_surrogate

    loss_cfg, upd = config.loss, config.update
    temperature = config.sampling.temperature
    norm_length = loss_cfg.norm_length or config.sampling.max_new_tokens
    out = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip_frac": 0.0, "ppo_kl": 0.0,
           "grad_norm": 0.0, "lr": scheduler.get_last_lr()[0], "updates": 0, "skipped_updates": 0, "skipped_seqs": 0,
           "sampler_logp_diff": float("nan"), "tokens_per_s": 0.0}
    if not seqs:
        return out
    single_pass = upd.ppo_epochs == 1 and upd.mini_batches == 1
    use_sampler = upd.old_logprobs == "sampler"
    need_entropy = loss_cfg.entropy_coeff > 0
    # a sequence with no non-zero advantage adds nothing to the clipped surrogate's gradient; with no
    # KL or entropy term it is left out of every forward pass but still counted by the aggregation
    if upd.skip_zero_advantage and not loss_cfg.use_kl_loss and not need_entropy:
        trained = [any(a != 0.0 and m for a, m in zip(s.advantages, s.loss_mask)) for s in seqs]
    else:
        trained = [True] * len(seqs)
    out["skipped_seqs"] = trained.count(False)

    # old (and reference) log-probs, fixed for the whole rollout batch
    old_lp: list[Any] = [None] * len(seqs)
    ref_lp: list[Any] = [None] * len(seqs)
    diffs: list[float] = []
    if not single_pass or loss_cfg.use_kl_loss or not use_sampler:
        with torch.no_grad():
            for idx in _micro_batches([i for i in range(len(seqs)) if trained[i]], seqs, upd.micro_batch_size):
                batch = M.collate([seqs[i] for i in idx], pad_id, device)
                if not single_pass and not use_sampler:
                    lp, _ = M.token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"],
                                             temperature=temperature, autocast=autocast)
                    known = batch["sampler_known"]
                    if known.any():
                        diffs.append((lp - batch["sampler_logprobs"]).abs()[known].mean().item())
                    for k, i in enumerate(idx):
                        old_lp[i] = lp[k, :len(seqs[i])].cpu()
                if loss_cfg.use_kl_loss:
                    with M.reference_mode(model, ref) as reference:
                        rlp, _ = M.token_logprobs(reference, batch["input_ids"], batch["attention_mask"],
                                                  batch["loss_mask"], temperature=temperature, autocast=autocast)
                    for k, i in enumerate(idx):
                        ref_lp[i] = rlp[k, :len(seqs[i])].cpu()

    rng = np.random.default_rng([config.seed, step, 1])
    sums = {k: 0.0 for k in ("pg_loss", "kl")}
    token_sums = {k: 0.0 for k in ("entropy", "clip_frac", "ppo_kl")}  # over the forwarded loss tokens
    forwarded_loss_tokens = 0.0
    total_tokens = 0.0
    grad_norms: list[float] = []
    t0 = time.perf_counter()
    processed = 0
    bar = progress_bar(f"update {step}", upd.ppo_epochs * sum(trained), progress)
    advance = bar.__enter__()
    for _epoch in range(upd.ppo_epochs):
        order = [int(i) for i in rng.permutation(len(seqs))]
        for mb in split(order, upd.mini_batches):
            n_tok = float(sum(seqs[i].num_loss_tokens for i in mb))
            n_seq = float(sum(len(seqs[i].rows) for i in mb))  # steps: a merged sequence holds several (§8.4, L1)
            optimizer.zero_grad(set_to_none=True)
            forward = [i for i in mb if trained[i]]
            if not forward:  # a zero gradient still moves AdamW's moments, exactly as unskipped
                for p in params:
                    p.grad = torch.zeros_like(p)
            for idx in _micro_batches(forward, seqs, upd.micro_batch_size):
                batch = M.collate([seqs[i] for i in idx], pad_id, device)
                mask = batch["loss_mask"]
                logp, ent = M.token_logprobs(model, batch["input_ids"], batch["attention_mask"], mask,
                                             temperature=temperature, with_entropy=True, autocast=autocast)
                if single_pass and not use_sampler:
                    old = logp.detach()  # no update has happened yet: the old policy is this one
                    known = batch["sampler_known"]
                    if known.any():
                        diffs.append((old - batch["sampler_logprobs"]).abs()[known].mean().item())
                elif use_sampler:
                    old = batch["sampler_logprobs"]
                else:
                    old = _pad_stack([old_lp[i] for i in idx], logp.shape[1], device)
                norms = {"num_tokens": n_tok, "num_seqs": n_seq, "norm_length": norm_length,
                         "row_share": batch["row_share"]}
                if loss_cfg.policy_loss == "gspo":
                    pg, clipped = gspo_surrogate(logp, old, batch["advantages"], mask, batch["row_ids"],
                                                 batch["num_rows"], clip_low=loss_cfg.clip_low,
                                                 clip_high=loss_cfg.clip_high)
                    pg_loss = aggregate(pg, mask, "seq-mean-token-mean", **norms)
                else:
                    pg, clipped = clipped_surrogate(logp, old, batch["advantages"], clip_low=loss_cfg.clip_low,
                                                    clip_high=loss_cfg.clip_high, clip_c=loss_cfg.clip_ratio_c)
                    pg_loss = aggregate(pg, mask, loss_cfg.loss_agg_mode, **norms)
                ent_loss = aggregate(ent, mask, loss_cfg.loss_agg_mode, **norms)
                loss = pg_loss - loss_cfg.entropy_coeff * ent_loss if need_entropy else pg_loss
                if loss_cfg.use_kl_loss:
                    kl = aggregate(kl_penalty(logp, _pad_stack([ref_lp[i] for i in idx], logp.shape[1], device),
                                              loss_cfg.kl_loss_type), mask, loss_cfg.loss_agg_mode, **norms)
                    loss = loss + loss_cfg.kl_loss_coef * kl
                    sums["kl"] += kl.item()
                loss.backward()
                with torch.no_grad():
                    sums["pg_loss"] += pg_loss.item()
                    forwarded_loss_tokens += mask.sum().item()
                    token_sums["entropy"] += (ent.detach() * mask).sum().item()
                    token_sums["clip_frac"] += (clipped * mask).sum().item()
                    token_sums["ppo_kl"] += ((old - logp.detach()) * mask).sum().item()
                total_tokens += batch["attention_mask"].sum().item()
                processed += len(idx)
                for _ in idx:
                    advance()
            max_norm = config.optim.max_grad_norm or float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not math.isfinite(grad_norm):
                optimizer.zero_grad(set_to_none=True)
                out["skipped_updates"] += 1
            else:
                optimizer.step()
                out["updates"] += 1
            scheduler.step()
            grad_norms.append(grad_norm)
    bar.__exit__(None, None, None)
    n_mb = upd.ppo_epochs * len(split(list(range(len(seqs))), upd.mini_batches))
    elapsed = time.perf_counter() - t0
    out.update({k: v / n_mb for k, v in sums.items()})
    out.update({k: v / max(forwarded_loss_tokens, 1.0) for k, v in token_sums.items()})
    out["loss"] = out["pg_loss"] - loss_cfg.entropy_coeff * out["entropy"] + loss_cfg.kl_loss_coef * out["kl"] * loss_cfg.use_kl_loss
    out["grad_norm"] = float(np.mean(grad_norms)) if grad_norms else 0.0
    out["tokens_per_s"] = total_tokens / elapsed if elapsed > 0 else 0.0
    if diffs:
        out["sampler_logp_diff"] = float(np.mean(diffs))
    return out


def _micro_batches(indices: list[int], seqs: list[Sequence], size: int) -> list[list[int]]:
    """Chunks of ``size`` sequences, grouped by length so little padding is forwarded."""
    ordered = sorted(indices, key=lambda i: len(seqs[i]))
    return [ordered[k:k + size] for k in range(0, len(ordered), size)]


def _pad_stack(rows: list[Any], width: int, device: Any) -> Any:
    import torch

    out = torch.zeros(len(rows), width)
    for k, r in enumerate(rows):
        out[k, :len(r)] = r
    return out.to(device)


def _lr_lambda(config: TrainConfig, total_updates: int) -> Callable[[int], float]:
    warm, kind = config.optim.warmup_steps, config.optim.schedule

    def factor(n: int) -> float:
        if warm and n < warm:
            return (n + 1) / warm
        if kind == "constant":
            return 1.0
        progress = min(1.0, (n - warm) / max(1, total_updates - warm))
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ---- tasks, seeds, run directory ----------------------------------------------------------------

def _tasks_for_step(tasks: list, config: TrainConfig, step: int, attempt: int = 0,
                    drawn: Collection[int] = ()) -> list:
    """``tasks_per_step`` tasks drawn without replacement by a generator seeded with (seed, step), or for a
    later rollout of the step (dynamic sampling) with (seed, step, attempt), among tasks not ``drawn`` yet
    where enough are left."""
    rng = np.random.default_rng([config.seed, step] + ([attempt] if attempt else []))
    k = config.rollout.tasks_per_step
    pool = [i for i in range(len(tasks)) if i not in drawn]
    if len(pool) < k:
        pool = list(range(len(tasks)))
    picks = rng.choice(len(pool), size=k, replace=k > len(pool))
    return [tasks[pool[int(i)]] for i in picks]


def _sample_step(collector: Collector, train_tasks: list, config: TrainConfig, step: int,
                 horizon: int | None) -> tuple[list, list[Trajectory], list[Trajectory], dict[str, Any]]:
    """A step's rollout: its tasks, the trajectories to train on, every trajectory sampled, and metrics.

    Under ``rollout.dynamic_sampling`` a group whose episode returns are all equal gives GRPO-style
    estimators nothing to compare, so it is dropped and more tasks are drawn, up to
    ``max_sampling_tries`` rollouts; the last one fills the step with its groups, those that differ
    first (DAPO; docs/ALGORITHMS.md §1.5). ``tasks_per_step`` groups are kept; their ids are in the
    metrics (``trained_groups``). Every trajectory is stored.
    """
    roll = config.rollout
    tasks = _tasks_for_step(train_tasks, config, step)
    trajectories = collector.collect(tasks, step=step, horizon=horizon)
    if not roll.dynamic_sampling:
        return tasks, trajectories, trajectories, {}
    index = {id(t): i for i, t in enumerate(train_tasks)}
    kept_tasks: list = []
    kept: list[Trajectory] = []
    sampled: list[Trajectory] = []
    drawn: set[int] = set()
    informative = tries = 0
    for attempt in range(roll.max_sampling_tries):
        if attempt:
            tasks = _tasks_for_step(train_tasks, config, step, attempt, drawn)
            trajectories = collector.collect(tasks, step=step, horizon=horizon, attempt=attempt)
        tries += 1
        drawn |= {index[id(t)] for t in tasks}
        sampled += trajectories
        groups = list(zip(tasks, _groups(trajectories)))
        differ = [len({t.reward for t in group}) > 1 for _, group in groups]
        informative += sum(differ)
        take = [g for g, d in zip(groups, differ) if d]
        if attempt == roll.max_sampling_tries - 1:  # the last try fills what is left, groups that differ first
            take += [g for g, d in zip(groups, differ) if not d]
        for task, group in take[:roll.tasks_per_step - len(kept_tasks)]:
            kept_tasks.append(task)
            kept += group
        if len(kept_tasks) == roll.tasks_per_step:
            break
    return kept_tasks, kept, sampled, {"sampling_tries": tries, "groups_sampled": tries * roll.tasks_per_step,
                                       "groups_informative": informative,
                                       "trained_groups": [group[0].group_id for group in _groups(kept)]}


def _groups(trajectories: list[Trajectory]) -> list[list[Trajectory]]:
    """Trajectories split by ``group_id``, in order of first appearance."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(t.group_id, []).append(t)
    return list(groups.values())


def _max_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def new_run_dir(config: TrainConfig) -> Path:
    """The run directory a new run of ``config`` writes: its ``run_dir``, else a new runs/<name>-<time>,
    created here so that two runs started in the same second get one each (the second gets a ``-2``)."""
    if config.run_dir:
        return Path(config.run_dir)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", config.name):  # it becomes one folder under runs/
        raise ConfigError(f"name {config.name!r} cannot name a run directory: use letters, digits, '.', '_' and '-' "
                          "(or set run_dir)")
    return claim_run_dir(Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_resumable(run_dir: Path) -> None:
    """Refuse to resume what is not a training run: a missing directory, or another command's run."""
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such run directory")
    saved = read_run_config(run_dir)
    if saved.get("command") in ("rollout", "eval"):
        raise ConfigError(f"--resume {run_dir}: that is a run directory of `agentgym {saved['command']}`, "
                          "not of a training run")


def refuse_used_run_dir(run_dir: Path) -> None:
    """A new run must not append to another run's records: refuse a directory that holds one."""
    if (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, "
                          "or choose another --run-dir")


def _discard_after(store: RunStore, step: int) -> None:
    """Drop what a killed run wrote after its checkpoint of ``step`` (-1: no checkpoint at all).

    Trajectory files and metrics of later steps go. The evaluation of ``step`` itself runs after
    the checkpoint: its metrics line is kept when it was written, and otherwise the evaluation runs
    again (replacing its trajectory file). Metrics are rewritten atomically.
    """
    import json
    import os

    for path in store.trajectory_files():
        s = _step_of(path.stem)
        if s is not None and s > step:
            path.unlink()
    if store.metrics_path.exists():
        keep = [m for m in store.load_metrics() if int(m.get("step", 0)) <= step]
        tmp = store.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(m) + "\n" for m in keep), encoding="utf-8")
        os.replace(tmp, store.metrics_path)


def _eval_due(config: TrainConfig, step: int) -> bool:
    """Whether step ``step`` ends with a held-out evaluation (step 0: the start-of-run one)."""
    every = config.eval.every
    return bool(every) and (config.eval.at_start if step == 0 else step % every == 0)


def _evaluated_steps(store: RunStore) -> set[int]:
    return {int(m["step"]) for m in store.load_metrics() if any(k.startswith("eval/") for k in m)} \
        if store.metrics_path.exists() else set()


def _step_of(stem: str) -> int | None:
    tail = stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


# ---- output -------------------------------------------------------------------------------------

def _prefixed(evals: dict[str, float]) -> dict[str, float]:
    return {f"eval/{k}": v for k, v in evals.items()}


def _log_eval(store: RunStore, say: Logger, step: int, evals: dict[str, float]) -> None:
    store.append_metrics({"step": step, **_prefixed(evals)})
    say(f"step {step:>4} eval " + "  ".join(f"{k} {v:.3f}" for k, v in evals.items()))


def idle_reason(record: dict[str, Any], trajectories: list[Trajectory], config: TrainConfig) -> str | None:
    """Why this step's update learned nothing from its episodes, or None when it had a signal.

    A step like that looks like any other on the metrics line (``gnorm 0.000``), so it is said.
    """
    if record["sequences"] == 0:
        agents = config.update.train_agents
        seen = sorted({s.agent for t in trajectories for s in t.steps})
        if agents is not None and not set(agents) & set(seen):
            return (f"update.train_agents ({', '.join(agents) or 'empty'}) names none of the agents acting here "
                    f"({', '.join(seen) or 'none'})")
        if record["dropped_long"]:
            return (f"all {record['dropped_long']} sequences are longer than update.max_seq_len="
                    f"{config.update.max_seq_len} tokens")
        return "no step carries loss (every episode failed, was discarded or has no sampled tokens)"
    if record["adv_abs"] == 0.0 and not config.loss.use_kl_loss and config.loss.entropy_coeff == 0:
        return ("every advantage is 0 (the episodes of each group scored alike): a zero gradient; the weights "
                "move only by weight decay and the optimizer's momentum from earlier steps")
    if record["updates"] == 0 and record["skipped_updates"]:
        return f"all {record['skipped_updates']} optimizer steps skipped: the gradient was not finite"
    return None


def _metrics_line(r: dict[str, Any], total: int) -> str:
    parts = [f"step {r['step']:>4}/{total}",
             f"success {r.get('success', 0):.2f}", f"reward {r.get('reward', 0):.2f}",
             f"invalid {r.get('invalid_rate', 0):.2f}", f"turns {r.get('turns', 0):.1f}",
             f"loss {r.get('loss', 0):+.4f}", f"kl {r.get('kl', 0):.4f}", f"ent {r.get('entropy', 0):.3f}",
             f"clip {r.get('clip_frac', 0):.3f}", f"gnorm {r.get('grad_norm', 0):.3f}",
             f"tok/s {r.get('tokens_per_s', 0):.0f}",
             f"time {r.get('time_rollout', 0):.1f}s roll + {r.get('time_update', 0):.1f}s upd"]
    if "sampling_tries" in r:  # dynamic sampling: groups that differed, of those rolled out
        parts.insert(5, f"groups {r['groups_informative']}/{r['groups_sampled']}")
    if r.get("idle"):
        parts.append(f"NO SIGNAL: {r['idle']}")
    return "  ".join(parts)


def _console_logger() -> Logger:
    from rich.console import Console

    console = Console(highlight=False)
    return lambda line: console.print(line, soft_wrap=True)
