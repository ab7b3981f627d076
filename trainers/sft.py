"""SFT warm start: supervised training on expert trajectories, with the RL trainer's masking.

Each agent turn of an expert trajectory is one sample: the prompt the agent saw, and the
response it gave. Loss (token-mean cross-entropy) is only on the response tokens and the end-of-turn
token after them; the system prompt, task, observations and earlier turns are masked, as in RL.

Expert trajectories (``agentgym rollout --policy expert``) carry messages but no token ids: a
scripted policy has no tokenizer. Here, and only here, text is tokenized on purpose: the prompt
is rendered exactly as the policy renders it for generation (``TransformersPolicy.render``: the
chat template with the environment's tools), and the response is ``tokenizer(response) + [eos]``,
the token sequence the policy would have to sample to say the same thing and stop. Steps that
already carry ``prompt_ids``/``response_ids`` (sampled by a model) are used as they are.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from agentgym.store import RunStore, read_trajectories, writing
from agentgym.trainers.batching import Sequence
from agentgym.trainers.config import SFTConfig, SFTSection, as_config
from agentgym.types import Trajectory


def data_files(source: str | Path) -> list[Path]:
    """The trajectory files of one ``sft.data`` entry: a .jsonl file, or a run directory's
    ``trajectories/*.jsonl`` except its held-out evaluations (``eval-*``: no test data in training)."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if (path / "trajectories").is_dir():
        return [f for f in sorted((path / "trajectories").glob("*.jsonl")) if not f.name.startswith("eval-")]
    from agentgym.errors import ConfigError

    what = "a directory without trajectories/" if path.is_dir() else "neither a run directory nor a .jsonl file"
    raise ConfigError(f"sft.data: {str(path)!r} is {what}")


def load_trajectories(sources: list[str]) -> list[Trajectory]:
    """Trajectories from run directories (every ``trajectories/*.jsonl``) or single .jsonl files."""
    files = dict.fromkeys(f.resolve() for source in sources for f in data_files(source))  # a file named twice: once
    return [traj for file in files for traj in read_trajectories(file)]


def _kept(traj: Trajectory, only_successful: bool) -> bool:
    return not traj.error and (traj.success or not only_successful)


def _trainable_step(step: Any) -> bool:
    return bool(step.prompt_ids is not None and step.response_ids) or step.messages is not None


def check_samples(trajectories: list[Trajectory], only_successful: bool, source: str = "sft.data") -> None:
    """Refuse SFT data without a single trainable turn, before any model loads; the error says why
    (``source`` names where the data came from)."""
    kept = [t for t in trajectories if _kept(t, only_successful)]
    if any(_trainable_step(s) for t in kept for s in t.steps):
        return
    from agentgym.errors import ConfigError

    if not trajectories:
        why = "it holds no trajectories"
    elif not kept:
        failed = sum(1 for t in trajectories if t.error)
        unsolved = sum(1 for t in trajectories if not t.success and not t.error)
        why = (f"none of its {len(trajectories)} trajectories is usable: {failed} ended with an error and "
               f"{unsolved} did not solve their task (sft.only_successful is {only_successful}: only solved "
               "episodes are kept)" if only_successful else
               f"all {failed} of its trajectories ended with an error")
    else:
        why = (f"its {len(kept)} usable trajectories recorded neither token ids nor prompt messages "
               "(roll them out with messages recorded, record_messages=True)")
    raise ConfigError(f"{source} gives no training samples: {why}")


def build_samples(trajectories: list[Trajectory], policy: Any, *, only_successful: bool = True,
                  max_seq_len: int | None = None, tool_schema: bool = True, merge: bool = True) -> list[Sequence]:
    """:class:`Sequence` objects with loss on each agent turn's response and its end-of-turn token.

    With ``merge``, a turn whose prompt extends the previous turn's prompt and target (an
    append-only context) joins that turn's sequence, so a trajectory is forwarded once.
    ``tool_schema`` must match the rollout setting the model will act under.
    """
    from agentgym.registry import make

    tokenizer = policy.tokenizer
    eos = tokenizer.eos_token_id
    tools_of: dict[str, Any] = {}
    out: list[Sequence] = []
    for i, traj in enumerate(trajectories):
        if not _kept(traj, only_successful):
            continue
        if traj.env not in tools_of:
            tools_of[traj.env] = make(traj.env).tools if tool_schema else []
        # a step continues the latest sequence (one shared conversation) or its own agent's latest
        # (roles with conversations of their own)
        latest: dict[str, Sequence | None] = {}
        newest: Sequence | None = None
        for t, step in enumerate(traj.steps):
            if step.prompt_ids is not None and step.response_ids:
                prompt, target = list(step.prompt_ids), list(step.response_ids)
            elif step.messages is not None:
                prompt = policy.render(step.messages, tools_of[traj.env])
                target = list(tokenizer(step.response, add_special_tokens=False)["input_ids"]) + [eos]
            else:
                continue
            fits = max_seq_len is None or len(prompt) + len(target) <= max_seq_len
            previous = next((p for p in (newest, latest.get(step.agent))
                             if p is not None and prompt[:len(p.input_ids)] == p.input_ids), None)
            if merge and previous is not None and fits:
                grown = prompt[len(previous):] + target
                previous.input_ids += grown
                previous.loss_mask += [0.0] * (len(grown) - len(target)) + [1.0] * len(target)
                previous.advantages += [1.0] * len(grown)
                previous.old_logprobs += [math.nan] * len(grown)
                previous.rows.append((i, t))
                latest[step.agent] = newest = previous
                continue
            if max_seq_len is not None and len(prompt) + len(target) > max_seq_len:
                keep = max_seq_len - len(target)
                if keep <= 0:
                    latest[step.agent] = newest = None
                    continue
                prompt = prompt[-keep:]
            ids = prompt + target
            mask = [0.0] * len(prompt) + [1.0] * len(target)
            latest[step.agent] = newest = Sequence(ids, mask, [1.0] * len(ids), [math.nan] * len(ids), i, [(i, t)])
            out.append(newest)
    return out


def collect_expert(config: Any, store: RunStore, *, progress: bool = True, env: Any = None) -> list[Trajectory]:
    """Roll out the environment's expert on ``sft.expert_tasks`` training tasks (seeded choice).

    Reuses ``trajectories/expert.jsonl`` when a previous (killed) run completed it. ``env`` is an
    environment factory for the runner (a :class:`~agentgym.trainers.ray_envs.RayEnvPool`'s); without
    one, ``rollout.ray_hosts`` > 0 starts hosts for these rollouts alone.
    """
    import asyncio
    import contextlib

    from agentgym.registry import load_tasks
    from agentgym.rollout import RolloutRunner
    from agentgym.trainers.rollouts import context_spec, progress_bar, ray_pool

    path = store.trajectory_dir / "expert.jsonl"
    tasks = load_tasks(config.env.id, config.env.train_suite)
    picks = np.random.default_rng([config.seed, 7]).permutation(len(tasks))[:config.sft.expert_tasks]
    tasks = [tasks[int(i)] for i in picks]
    if path.exists():
        done = store.load_trajectories("expert")
        if len(done) == len(tasks):
            return done
        path.unlink()
    extra = {} if config.rollout.system_prompt is None else {"system_prompt": config.rollout.system_prompt or None}
    with contextlib.ExitStack() as stack:
        pool = ray_pool(config) if env is None else None
        if pool is not None:
            env = stack.enter_context(pool).envs(config.env.id, **config.env.options)
        # the expert writes no summaries: under a summarizing context its turns keep the full history
        context = "full" if config.context.type == "summary" else context_spec(config.context)
        runner = RolloutRunner("expert", env, n=1, concurrency=config.rollout.concurrency,
                               max_turns=config.env.max_turns, context=context, store=store,
                               store_name="expert", seed=config.seed, env_options=dict(config.env.options), **extra)
        with progress_bar("expert rollouts", len(tasks), progress) as advance:
            result = asyncio.run(runner.run(tasks, on_trajectory=lambda _t: advance()))
    return result.trajectories


def sft_train(policy: Any, model: Any, section: SFTSection, *, device: Any, pad_id: int, seed: int = 0,
              log: Callable[[str], None] = print, progress: bool = True,
              trajectories: list[Trajectory] | None = None, tool_schema: bool = True) -> dict[str, float]:
    """Train ``model`` (the policy's weights, or its LoRA wrapper) on expert trajectories; returns metrics.

    ``trajectories`` defaults to those named by ``section.data``.
    """
    import torch

    from agentgym.trainers import model as M
    from agentgym.trainers.rollouts import progress_bar

    if trajectories is None:
        trajectories = load_trajectories(section.data)
    samples = build_samples(trajectories, policy, only_successful=section.only_successful,
                            max_seq_len=section.max_seq_len, tool_schema=tool_schema)
    if not samples:
        from agentgym.errors import ConfigError

        source = "sft.data" if section.data else "the expert rollout"
        check_samples(trajectories, section.only_successful, source)  # names why: errors, unsolved, no records
        raise ConfigError(f"{source} gave no training samples ({len(trajectories)} trajectories; "
                          "only_successful keeps successful ones only)")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=section.lr, weight_decay=0.0)
    batches_per_epoch = math.ceil(len(samples) / section.batch_size)
    total = math.ceil(section.epochs * batches_per_epoch)
    if section.max_steps is not None:
        total = min(total, section.max_steps)
    turns = sum(len(s.rows) for s in samples)
    log(f"SFT: {turns} turns in {len(samples)} sequences from {len(trajectories)} trajectories, "
        f"{total} update{'s' if total != 1 else ''}")
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    tokens = 0
    t0 = time.perf_counter()
    model.train()
    order: list[int] = []
    with progress_bar("sft", total, progress) as advance:
        for update in range(total):
            if len(order) < section.batch_size:
                order += [int(i) for i in rng.permutation(len(samples))]
            batch_idx, order = order[:section.batch_size], order[section.batch_size:]
            n_tok = float(sum(samples[i].num_loss_tokens for i in batch_idx))
            optimizer.zero_grad(set_to_none=True)
            batch_loss = 0.0
            for k in range(0, len(batch_idx), section.micro_batch_size):
                micro = [samples[i] for i in batch_idx[k:k + section.micro_batch_size]]
                batch = M.collate(micro, pad_id, device)
                logp, _ = M.token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"],
                                           autocast=policy.autocast)
                loss = -(logp * batch["loss_mask"]).sum() / n_tok
                loss.backward()
                batch_loss += loss.item()
                tokens += int(batch["attention_mask"].sum().item())
            torch.nn.utils.clip_grad_norm_(params, section.max_grad_norm or float("inf"))
            optimizer.step()
            losses.append(batch_loss)
            advance()
            if (update + 1) % max(1, total // 10) == 0 or update + 1 == total:
                log(f"sft update {update + 1:>4}/{total}  loss {np.mean(losses[-max(1, total // 10):]):.4f}")
    model.eval()
    elapsed = time.perf_counter() - t0
    return {"sft_samples": float(len(samples)), "sft_updates": float(total), "sft_loss_first": losses[0],
            "sft_loss_last": float(np.mean(losses[-max(1, total // 10):])), "sft_time": elapsed,
            "sft_tokens_per_s": tokens / elapsed if elapsed else 0.0}


def run_sft(config: SFTConfig | dict[str, Any] | str | Path, *, policy: Any = None,
            log: Callable[[str], None] | None = None, progress: bool = True) -> Path:
    """``agentgym sft``: SFT a policy on expert trajectories and save it as ``RUN_DIR/model``.

    The saved directory is a Hugging Face model directory (``hf:RUN_DIR/model`` loads it; with
    LoRA the adapters are merged first). Returns the run directory.
    """
    from agentgym.trainers import model as M
    from agentgym.trainers.rl import _console_logger, new_run_dir, refuse_used_run_dir
    from agentgym.trainers.rollouts import check_inputs

    config = as_config(config, SFTConfig)
    say = log or _console_logger()
    config.env.load_plugins()
    check_inputs(config, train_suite=not config.sft.data)  # before the model loads and the run directory appears
    data = load_trajectories(config.sft.data) if config.sft.data else None  # a bad line fails here too
    if data is not None:
        check_samples(data, config.sft.only_successful)
    if policy is None:
        M.check_trainable(config.policy.model)
    run_dir = new_run_dir(config)  # type: ignore[arg-type]
    refuse_used_run_dir(run_dir)
    store = RunStore(run_dir)
    from agentgym.policies.hf import hf_bars

    with writing(run_dir), hf_bars(progress):
        refuse_used_run_dir(run_dir)  # again: another sft may have taken it since
        store.write_config(config)
        return _run_sft(config, run_dir, store, data, policy, say=say, progress=progress)


def _run_sft(config: SFTConfig, run_dir: Path, store: RunStore, data: list[Trajectory] | None, policy: Any, *,
             say: Callable[[str], None], progress: bool) -> Path:
    """:func:`run_sft` once its inputs are checked and it holds the run directory."""
    from agentgym.trainers import model as M
    from agentgym.trainers.rl import _seed_everything

    _seed_everything(config.seed)
    policy, model, device, pad_id = M.prepare_trainable(config.policy, policy)
    if data is None:
        data = collect_expert(config, store, progress=progress)
    metrics = sft_train(policy, model, config.sft, device=device, pad_id=pad_id, seed=config.seed, log=say,
                        tool_schema=config.rollout.tool_schema,
                        progress=progress, trajectories=data)
    if config.policy.lora.enable:
        model = model.merge_and_unload()
        policy.model = model
    partial = run_dir / "model.partial"  # renamed when whole: RUN_DIR/model is never half written
    model.save_pretrained(partial)
    policy.tokenizer.save_pretrained(partial)
    os.replace(partial, run_dir / "model")
    store.append_metrics({"step": 0, "phase": "sft", **metrics})
    say(f"SFT done: loss {metrics['sft_loss_first']:.4f} -> {metrics['sft_loss_last']:.4f}; model saved to {run_dir / 'model'}")
    if config.eval.every:
        from agentgym.trainers.rollouts import Collector

        collector = Collector(config, policy, store, progress=progress)
        try:
            evals = collector.evaluate(step=0)
        finally:
            collector.close()
        store.append_metrics({"step": 0, "phase": "eval", **{f"eval/{k}": v for k, v in evals.items()}})
        say("eval " + "  ".join(f"{k} {v:.3f}" for k, v in evals.items()))
    return run_dir
