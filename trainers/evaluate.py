"""``agentgym eval``: a trained run's model on held-out suites, under the settings it was trained with.

A run's own evaluation (``eval.every``) and this one play the same way: the run's environment and
options, system prompt, tool schema, context manager, turn limit, ``sampling.eval_temperature`` and
``max_new_tokens``, and the same episode seeds for the same checkpoint step. So evaluating the
checkpoint of step k repeats the run's evaluation of step k, and a larger ``--limit`` or another
suite extends it. ``agentgym rollout`` with its own defaults would not: a model trained on
plain-text actions, for example, does poorly when shown tool schemas it never saw in training.

The results go to a new run directory (the evaluated run is only read)::

    OUT/config.yaml                       what was evaluated, and how
    OUT/trajectories/eval-<suite>-<step>.jsonl
    OUT/metrics.jsonl                     {"event": "eval", "step": k, "eval/<suite>/success": ..., ...}
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from agentgym.errors import ConfigError
from agentgym.store import (CONFIG_CHANGES, RunStore, checkpoint_name, claim_run_dir, list_checkpoints, read_records,
                            read_run_config, run_kind, trained_model)
from agentgym.trainers.config import SFTConfig, TrainConfig, load_config


def run_config(run_dir: Path, step: int | None = None) -> TrainConfig | SFTConfig:
    """The config of the training or SFT run in ``run_dir``: as it was last written or, given ``step``,
    the settings training step ``step`` ran with (what a later resume changed is set back, from
    ``config-changes.jsonl``)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        if (run_dir / "trainer_state.json").is_file():
            raise ConfigError(f"{run_dir} is a checkpoint: give its run directory, and --checkpoint "
                              f"{run_dir.name} (the run's config says how to play)")
        what = "does not exist" if not run_dir.exists() else "has no config.yaml: it is not a run directory"
        raise ConfigError(f"{run_dir} {what}")
    data = read_run_config(run_dir)
    kind = run_kind(data)
    if kind in ("rollout", "eval"):
        raise ConfigError(f"{run_dir} is a run directory of `agentgym {kind}`, not of a training run; "
                          "its policy was not trained there (evaluate that policy with agentgym rollout)")
    if step is not None:
        data = _settings_at(data, read_records(run_dir / CONFIG_CHANGES), step)
    return load_config(data, kind=TrainConfig if kind == "train" else SFTConfig, saved=True)


def _settings_at(config: dict[str, Any], changes: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """``config`` with each change recorded at a resume from step ``step`` or later set back to its old value."""
    config = copy.deepcopy(config)
    for record in reversed(changes):  # newest first: a key changed twice ends at its oldest value
        if record.get("step", -1) < step:  # took effect before that step ran
            continue
        for key, (old, _new) in record.get("changes", {}).items():
            *parents, last = key.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            if old is None:  # the key was absent: its default applied
                node.pop(last, None)
            else:
                node[last] = old
    return config


def model_of(run_dir: Path, checkpoint: str | None) -> tuple[Path, int]:
    """The model directory (or checkpoint) to evaluate and the training step it is from.

    ``checkpoint`` is a step number or a ``step_N`` name under ``RUN_DIR/checkpoints``; by default
    the newest checkpoint, else the ``model/`` an SFT run saved (step 0).
    """
    if checkpoint is not None:
        number = re.fullmatch(r"(?:step_)?(\d+)", checkpoint)
        if number is None:
            raise ConfigError(f"--checkpoint {checkpoint!r}: give a step number such as 8, or step_00000008")
        path = run_dir / "checkpoints" / checkpoint_name(int(number.group(1)))
        if path not in list_checkpoints(run_dir / "checkpoints"):
            have = [p.name for p in list_checkpoints(run_dir / "checkpoints")]
            raise ConfigError(f"{run_dir} has no checkpoint {path.name!r}; it has: {', '.join(have) or 'none'}")
    else:
        path = trained_model(run_dir)
        if path is None:
            raise ConfigError(f"{run_dir} has no checkpoint and no model/ yet: nothing trained to evaluate")
    state = path / "trainer_state.json"
    return path, int(json.loads(state.read_text(encoding="utf-8"))["step"]) if state.is_file() else 0


def evaluate_run(run_dir: str | Path, *, policy: str | None = None, checkpoint: str | None = None,
                 suites: list[str] | None = None, limit: int | None = None, samples: int | None = None,
                 device: str = "auto", out: str | Path | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = None, ray_hosts: int | None = None,
                 on_output: Callable[[Path], None] | None = None) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Evaluate the model of the run in ``run_dir`` (or ``policy`` under its settings) on ``device``.

    ``ray_hosts`` replaces the run's ``rollout.ray_hosts`` (0: environments in this process).
    ``on_output`` is called with the output directory once it exists, before any episode runs.

    Returns the output directory and, per suite, :func:`agentgym.rollout.summarize` of its episodes.
    """
    from agentgym.rollout import summarize
    from agentgym.trainers.rollouts import Collector, check_inputs

    run_dir = Path(run_dir)
    latest = run_config(run_dir)  # a path that is not a training run fails here, before the checkpoint is looked for
    if policy is not None and checkpoint is not None:
        raise ConfigError("give a checkpoint or a policy, not both")
    step, what, settings_of = 0, f"under the settings of {run_dir}", None  # another policy: the latest settings
    if policy is None:
        model, step = model_of(run_dir, checkpoint)
        policy, what, settings_of = f"hf:{model.resolve()}", f"step {step} of {run_dir}", step
    config = (latest if settings_of is None else run_config(run_dir, settings_of)).model_copy(deep=True)
    config.eval.every = 1  # so the suites below are checked
    config.policy.device = device  # this machine's, not necessarily the training machine's
    if suites:
        config.env.eval_suites = list(suites)
    if limit is not None:
        config.eval.max_tasks = limit
    if samples is not None:
        config.eval.samples = samples
    if ray_hosts is not None:
        config.rollout.ray_hosts = ray_hosts
    if not config.env.eval_suites:
        raise ConfigError(f"{run_dir} evaluates no suites (env.eval_suites is empty): name one with --suite")
    config.env.load_plugins()
    check_inputs(config, train_suite=False, sft_data=False, eval_key="--suite" if suites else "env.eval_suites")
    if out is not None:
        root = Path(out)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            what = "is not a directory" if not root.is_dir() else "already holds files"
            raise ConfigError(f"{root} {what}; choose a new output directory")
    say = log or print
    if config.eval.samples > 1 and config.sampling.eval_temperature == 0:
        say(f"note: the run evaluates greedily (sampling.eval_temperature 0), so the {config.eval.samples} samples "
            "of a task differ only where the environment itself is random")
    loaded = _load(policy, config, progress)
    if out is None:
        root = claim_run_dir(Path("runs") / f"eval-{run_dir.resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}")
    store = RunStore(root)
    say(f"evaluating {policy} ({what}) into {root}")
    if on_output is not None:
        on_output(root)
    try:
        collector = Collector(config, loaded, store, progress=progress)
    except BaseException:  # the environment hosts did not start: the loaded model's threads go too
        asyncio.run(loaded.aclose())
        raise
    try:
        store.write_config({"command": "eval", "run": str(run_dir), "policy": policy, "step": step,
                            "suites": config.env.eval_suites, "limit": config.eval.max_tasks,
                            "samples": config.eval.samples, "device": device})
        metrics = collector.evaluate(step=step)
    finally:
        collector.close(policy=True)
    store.append_metrics({"event": "eval", "step": step, **{f"eval/{k}": v for k, v in metrics.items()}})  # as a run logs it
    return root, {suite: summarize(store.load_trajectories(f"eval-{suite}-{step:06d}"))
                  for suite in config.env.eval_suites}


def _load(name: str, config: Any, progress: bool) -> Any:
    """A model policy on the run's device, dtype and batch size; any other policy as its name says."""
    if name == "smollm2" or name.startswith("hf:"):
        from agentgym.policies.hf import hf_bars
        from agentgym.trainers import model as M

        device = M.resolve_device(config.policy.device)
        dtype = M.resolve_dtype(config.policy.dtype, device)
        with hf_bars(progress):
            return M.load_policy(name, device=device, dtype=dtype, max_batch_size=config.policy.generation_batch_size,
                                 prefix_cache_tokens=config.policy.prefix_cache_tokens,
                                 autocast=M.resolve_autocast(config.policy.autocast, device, dtype))
    from agentgym.policies import load_policy

    return load_policy(name)
