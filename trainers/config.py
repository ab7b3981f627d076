"""Run configs for ``agentgym train`` and ``agentgym sft``: pydantic models loaded from YAML.

Every field has a one-line help text (the CLI shows it); cross-field checks raise
:class:`~agentgym.errors.ConfigError` naming the key and the fix. ``--set key=value`` overrides
use dotted keys (``loss.clip_high=0.28``); values are read as YAML scalars.

This module imports pydantic, yaml and agentgym.credit (numpy) only.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from agentgym.credit import CreditConfig, horizon
from agentgym.errors import ConfigError, yaml_problem


M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads yes/no/on/off/true as bools, and pydantic would take one for a number (lr: on is 1.0)
        if isinstance(value, bool) and info.field_name is not None:
            kinds = set(typing.get_args(cls.model_fields[info.field_name].annotation)) or {
                cls.model_fields[info.field_name].annotation}
            if kinds & {int, float} and bool not in kinds:
                raise ValueError("a yes/no value is not a number (YAML reads on/off, yes/no, true/false as one)")
        return value


class EnvSection(_Section):
    id: str = Field("household-v0", description="Registry id of the environment.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword overrides passed to agentgym.make.")
    train_suite: str = Field("train", description="Task suite the trainer samples rollout tasks from.")
    eval_suites: list[str] = Field(default_factory=lambda: ["test-unseen"], description="Held-out suites evaluated every eval.every steps (unset: test-unseen, or test where the environment has no test-unseen).")
    max_turns: int | None = Field(None, gt=0, description="Cap on agent turns per episode (None: the task's own max_turns).")
    plugins: list[str] = Field(default_factory=list, description="Modules ('pkg.mod') or callables ('pkg.mod:fn') loaded first; they register custom environments.")

    def load_plugins(self) -> None:
        """Import each plug-in module and call the named function, if any (:func:`agentgym.registry.load_plugin`)."""
        from agentgym.registry import load_plugins

        load_plugins(self.plugins, "env.plugins")


def _saved(info: ValidationInfo) -> bool:
    """Whether the config being validated is a run's saved one (``load_config(saved=True)``): settings
    refused in a new config because they would do nothing are left as the run had them."""
    return bool(info.context and info.context.get("saved"))


class LoraSection(_Section):
    enable: bool = Field(False, description="Train LoRA adapters instead of all weights (peft); the reference is the base with adapters off.")
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt: 'all-linear', a list of module "
                                            "names, or a regex peft matches against full module names.")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "LoraSection":
        if not self.enable and not _saved(info):  # a LoRA setting without LoRA would train every weight, silently
            changed = [n for n in ("r", "alpha", "dropout", "target_modules")
                       if getattr(self, n) != type(self).model_fields[n].default]
            if changed:
                raise ValueError(f"policy.lora.{changed[0]} applies to LoRA training, but policy.lora.enable is "
                                 "false: set policy.lora.enable: true, or remove it")
        return self

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, value: list[str] | str) -> list[str] | str:
        if not value:
            raise ValueError("give 'all-linear', a list of module names such as [q_proj, v_proj], or a regex")
        return value


class PolicySection(_Section):
    model: str = Field("smollm2", description="Policy name for agentgym.policies.load_policy: 'smollm2' or 'hf:/path/to/model_dir'.")
    device: str = Field("auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Training dtype; 'auto' is bfloat16 on GPU and float32 on CPU.")
    autocast: Literal["off", "auto", "bfloat16", "float16"] = Field("off", description=(
        "Forward passes (sampling and training) under torch.autocast to this dtype; weights, optimizer and "
        "loss stay in `dtype`. 'auto': bfloat16 for float32 weights on a CPU with AMX or a CUDA GPU with bf16 "
        "(faster there: bench/bench_train_step.py --autocast bfloat16), off elsewhere."))
    generation_batch_size: int = Field(8, gt=0, description="Conversations per generate call of the embedded policy.")
    prefix_cache_tokens: int = Field(32768, ge=0, description=(
        "Tokens of key/value states the embedded policy keeps so a conversation's next turn runs only its new "
        "tokens (0: off; cleared whenever the weights change)."))
    gradient_checkpointing: bool | None = Field(None, description=(
        "Recompute activations in backward: less memory, slower (bench/bench_train_step.py). "
        "null: on for CUDA, off on CPU, where memory is rarely short."))
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA adapters (peft).")

    @field_validator("autocast", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """YAML reads ``off`` as false and ``on`` as true."""
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value


class SamplingSection(_Section):
    temperature: float = Field(1.0, gt=0.0, description="Rollout sampling temperature (training log-probs use the same temperature).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Rollout nucleus sampling; below 1 the ratio is taken against a truncated sampler.")
    max_new_tokens: int = Field(64, gt=0, description="Token budget of one agent turn.")
    eval_temperature: float = Field(0.0, ge=0.0, description="Sampling temperature at evaluation (0 = greedy).")


class ContextSection(_Section):
    type: Literal["full", "window", "summary"] = Field("full", description="What the policy sees: the full history, the last `window` turns, or summaries.")
    window: int | None = Field(None, gt=0, description="Turns kept by the 'window' context manager.")
    max_tokens: int | None = Field(None, gt=0, description="Token budget that triggers a summary ('summary' context).")
    max_summaries: int | None = Field(None, ge=0, description="Summary rounds before an episode ends as overlong ('summary' context).")
    options: dict[str, Any] = Field(default_factory=dict, description="Unused: no context manager takes options "
                                    "(kept, empty, so that older runs' configs load).")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "ContextSection":
        if self.options and not _saved(info):
            raise ValueError(f"context.options ({', '.join(self.options)}): no context manager takes options; remove it")
        if self.type == "window" and self.window is None:
            raise ValueError("context.type is 'window' but context.window is not set: give the number of turns to keep")
        if self.type == "summary" and self.max_tokens is None:
            raise ValueError("context.type is 'summary' but context.max_tokens is not set: give the token budget")
        # a setting of another context type would be silently ignored
        for key, owner in (("window", "window"), ("max_tokens", "summary"), ("max_summaries", "summary")):
            if getattr(self, key) is not None and self.type != owner:
                raise ValueError(f"context.{key} applies to context.type '{owner}', but context.type is "
                                 f"'{self.type}': set context.type: {owner} or remove context.{key}")
        return self


class RolloutSection(_Section):
    tasks_per_step: int = Field(8, gt=0, description="Task groups collected per training step.")
    group_size: int = Field(8, gt=0, description="Samples per task (one group, shared group_id).")
    concurrency: int = Field(64, gt=0, description="Episodes run at once.")
    step_timeout: float | None = Field(60.0, gt=0, description="Seconds one environment step may take.")
    episode_timeout: float | None = Field(None, gt=0, description="Seconds one episode may take.")
    system_prompt: str | None = Field(None, description="System message of every episode (null: the rollout engine's default; '' for none).")
    tool_schema: bool = Field(True, description="Show the tool specs in the prompt; false for plain-text actions (shorter prompts).")
    ray_hosts: int = Field(0, ge=0, description="Ray actors that hold the environments (0: in this process); needs agentgym[distributed].")
    ray_address: str | None = Field(None, description="Ray cluster to join ('auto', 'ray://head:10001'); null starts a local Ray. Used when ray_hosts > 0.")
    ray_cpus_per_host: float = Field(1.0, ge=0, description="CPUs each environment host reserves from Ray (fractions allowed).")
    dynamic_sampling: bool = Field(False, description="Train only on task groups whose episode returns differ (DAPO's "
                                   "dynamic sampling, docs/ALGORITHMS.md §1.5): draw more tasks until tasks_per_step "
                                   "such groups; the last of max_sampling_tries rollouts fills the step, groups that "
                                   "differ first.")
    max_sampling_tries: int = Field(3, gt=0, description="Rollouts a step may run to fill it under dynamic_sampling.")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "RolloutSection":
        if self.dynamic_sampling and self.group_size < 2:
            raise ValueError("rollout.dynamic_sampling keeps the groups whose episodes scored differently: it needs "
                             f"rollout.group_size of 2 or more, got {self.group_size}")
        tries = type(self).model_fields["max_sampling_tries"].default
        if not self.dynamic_sampling and self.max_sampling_tries != tries and not _saved(info):
            raise ValueError("rollout.max_sampling_tries applies to dynamic sampling, but rollout.dynamic_sampling is "
                             "false: set rollout.dynamic_sampling: true, or remove it")
        return self


class HorizonSection(_Section):
    type: Literal["fixed", "stepwise"] = Field("fixed", description="Interaction-horizon schedule (ScalingInter-RL, docs/ALGORITHMS.md §6).")
    rounds: list[int] = Field(default_factory=list, description="Horizons h_0 < h_1 < ...; 'fixed' uses rounds[0] or the env's max_turns when empty.")
    steps_per_stage: int = Field(100, gt=0, description="Training steps per horizon stage (K).")


class LossSection(_Section):
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = Field(
        "token-mean", description="How token losses reduce to a scalar (docs/ALGORITHMS.md §8.4).")
    policy_loss: Literal["vanilla", "gspo"] = Field("vanilla", description="Token-level ratios (PPO), or GSPO's "
                                                    "sequence-level ratio per step, clipped by clip_low/clip_high (GSPO "
                                                    "uses about 3e-4/4e-4), no dual-clip; the policy term then "
                                                    "aggregates seq-mean-token-mean (docs/ALGORITHMS.md §8.4).")
    clip_low: float = Field(0.2, ge=0.0, lt=1.0, description="Lower ratio clip ε_low: ρ ≥ 1 − ε_low.")
    clip_high: float = Field(0.2, ge=0.0, description="Upper ratio clip ε_high: ρ ≤ 1 + ε_high (DAPO clip-higher: 0.28).")
    clip_ratio_c: float | None = Field(3.0, description="Dual-clip bound c (> 1) for negative advantages; null turns dual-clip off.")
    use_kl_loss: bool = Field(False, description="Add β·KL(π‖π_ref) to the loss (reference: frozen initial weights, or the base without LoRA).")
    kl_loss_type: Literal["k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl"] = Field("low_var_kl", description="KL estimator (docs/ALGORITHMS.md §8.5).")
    kl_loss_coef: float = Field(0.01, ge=0.0, description="β, the KL loss weight.")
    entropy_coeff: float = Field(0.0, ge=0.0, description="Entropy bonus weight c_ent (loss − c_ent·H).")
    norm_length: int | None = Field(None, gt=0, description="L_max for seq-mean-token-sum-norm (default: sampling.max_new_tokens).")


class OptimSection(_Section):
    lr: float = Field(1e-6, gt=0.0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1).")
    eps: float = Field(1e-8, gt=0.0, description="AdamW epsilon.")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="Gradient clipping by global norm (null: off).")
    warmup_steps: int = Field(0, ge=0, description="Optimizer updates of linear warm-up.")
    schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="Learning-rate decay after warm-up.")

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"each AdamW beta must be in [0, 1), got {list(value)}")
        return value


class UpdateSection(_Section):
    total_steps: int = Field(100, gt=0, description="Training steps (rollout batch + update) in the run.")
    ppo_epochs: int = Field(1, gt=0, description="Passes over each rollout batch.")
    mini_batches: int = Field(1, gt=0, description="Optimizer updates per epoch (the batch is split into this many mini-batches).")
    micro_batch_size: int = Field(4, gt=0, description="Sequences per forward/backward (gradient accumulation inside a mini-batch).")
    max_seq_len: int | None = Field(None, gt=0, description="Drop (and count) training sequences longer than this many tokens.")
    old_logprobs: Literal["recompute", "sampler"] = Field("recompute", description="Ratio denominator: recomputed by the trainer after rollout, or the sampler's logprobs.")
    skip_zero_advantage: bool = Field(True, description="Do not forward sequences whose every loss token has advantage 0 (their gradient is 0; "
                                      "the loss keeps counting their tokens, so updates are unchanged; entropy, clip fraction and PPO KL are then "
                                      "measured on the forwarded ones). Applies only with no KL loss and no entropy bonus.")
    train_agents: list[str] | None = Field(None, description="Agent ids whose steps carry loss (null: every agent).")
    advantage_sign: Literal[1, -1] = Field(1, description="-1 flips every advantage: a negative control for tests, never for training.")


class EvalSection(_Section):
    every: int = Field(10, ge=0, description="Evaluate every this many steps (0: never).")
    at_start: bool = Field(True, description="Also evaluate before the first update (step 0).")
    max_tasks: int | None = Field(None, gt=0, description="Evaluate on the first N tasks of each suite (null: all).")
    samples: int = Field(1, gt=0, description="Samples per evaluation task.")


class CheckpointSection(_Section):
    every: int = Field(10, ge=0, description="Write a checkpoint every this many steps (0: only at the end).")
    keep_last: int = Field(2, gt=0, description="Checkpoints kept; older ones are deleted after a new one is complete.")
    save_final: bool = Field(True, description="Write a checkpoint after the last step.")


class SFTSection(_Section):
    data: list[str] = Field(default_factory=list, description="Expert trajectories: run directories (their eval-* files left out) or .jsonl files (from `agentgym rollout --policy expert`).")
    expert_tasks: int | None = Field(None, gt=0, description="When data is empty: first roll out the expert on this many training tasks (saved as trajectories/expert.jsonl).")
    only_successful: bool = Field(True, description="Train only on trajectories that succeeded.")
    epochs: float = Field(2.0, gt=0.0, description="Passes over the SFT data.")
    lr: float = Field(5e-5, gt=0.0, description="AdamW learning rate for SFT.")
    batch_size: int = Field(8, gt=0, description=(
        "Sequences per optimizer update. A trajectory with an append-only context is one sequence "
        "holding all its turns; otherwise each turn is one."))
    micro_batch_size: int = Field(4, gt=0, description="Sequences per forward/backward.")
    max_seq_len: int | None = Field(None, gt=0, description="Longer turns keep only the last tokens of their prompt (left truncation); turns do not merge past it.")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="Gradient clipping by global norm.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer updates (null: run all epochs).")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "SFTSection":
        if self.micro_batch_size > self.batch_size and not _saved(info):
            raise ValueError(f"sft.micro_batch_size ({self.micro_batch_size}) must not exceed "
                             f"sft.batch_size ({self.batch_size})")
        return self


class _RunConfig(_Section):
    name: str = Field("run", description="Run name (letters, digits, '.', '_', '-'): the default run directory "
                      "is runs/<name>-<time>.")
    run_dir: str | None = Field(None, description="Run directory (default: runs/<name>-<timestamp>).")
    seed: int = Field(0, description="Seed for task sampling, rollout sampling and initialization.")
    policy: PolicySection = Field(default_factory=PolicySection, description="Model, device, dtype and LoRA.")


class SFTConfig(_RunConfig):
    """Config of ``agentgym sft``: supervised training on expert trajectories."""

    name: str = Field("sft", description="Run name (letters, digits, '.', '_', '-'): the default run directory "
                      "is runs/<name>-<time>.")
    sft: SFTSection = Field(default_factory=SFTSection, description="SFT data and schedule.")
    env: EnvSection = Field(default_factory=EnvSection, description="Environment (only for the optional evaluation).")
    sampling: SamplingSection = Field(default_factory=SamplingSection, description="Sampling for the optional evaluation.")
    context: ContextSection = Field(default_factory=ContextSection, description="Context manager for the optional evaluation.")
    rollout: RolloutSection = Field(default_factory=RolloutSection, description="Concurrency and limits of the optional evaluation.")
    eval: EvalSection = Field(default_factory=lambda: EvalSection(every=0, at_start=False), description="Evaluate after SFT when every > 0.")

    @model_validator(mode="after")
    def _check(self) -> "SFTConfig":
        if not self.sft.data and self.sft.expert_tasks is None:
            raise ValueError("sft.data is empty: list expert run directories or .jsonl files "
                             "(make them with `agentgym rollout --policy expert`), or set sft.expert_tasks")
        return self


class TrainConfig(_RunConfig):
    """Config of ``agentgym train``: one RL run, optionally preceded by an SFT warm start."""

    env: EnvSection = Field(default_factory=EnvSection, description="Environment and task suites.")
    sampling: SamplingSection = Field(default_factory=SamplingSection, description="Rollout sampling.")
    context: ContextSection = Field(default_factory=ContextSection, description="Context manager (full history, window, summaries).")
    rollout: RolloutSection = Field(default_factory=RolloutSection, description="Groups per step and concurrency.")
    credit: CreditConfig = Field(default_factory=lambda: CreditConfig(estimator="gigpo"),
                                 description="Credit assignment (agentgym.credit.CreditConfig: estimator, norm, gamma, omega, ...).")
    horizon: HorizonSection = Field(default_factory=HorizonSection, description="Interaction-horizon schedule.")
    loss: LossSection = Field(default_factory=LossSection, description="Policy loss (docs/ALGORITHMS.md §8).")
    optim: OptimSection = Field(default_factory=OptimSection, description="Optimizer and learning-rate schedule.")
    update: UpdateSection = Field(default_factory=UpdateSection, description="Steps, epochs and batching of the update.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Held-out evaluation.")
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection, description="Atomic checkpoints.")
    sft: SFTSection | None = Field(None, description="Optional SFT warm start run before RL (same model).")

    @model_validator(mode="before")
    @classmethod
    def _default_estimator(cls, data: Any) -> Any:
        # a credit section without an estimator means the trainer's default, GiGPO
        if isinstance(data, dict) and isinstance(data.get("credit"), dict) and "estimator" not in data["credit"]:
            data = {**data, "credit": {"estimator": "gigpo", **data["credit"]}}
        return data

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "TrainConfig":
        loss, upd, roll = self.loss, self.update, self.rollout
        if loss.clip_ratio_c is not None and loss.clip_ratio_c <= 1.0:
            raise ValueError(f"loss.clip_ratio_c must be greater than 1 (or null to turn dual-clip off), got {loss.clip_ratio_c}")
        if not loss.use_kl_loss and not _saved(info):  # a KL setting without the KL loss would change nothing
            changed = [n for n in ("kl_loss_type", "kl_loss_coef") if getattr(loss, n) != LossSection.model_fields[n].default]
            if changed:
                raise ValueError(f"loss.{changed[0]} applies to the KL loss, but loss.use_kl_loss is false: set "
                                 "loss.use_kl_loss: true, or remove it")
        dual_clip = loss.clip_ratio_c not in (None, LossSection.model_fields["clip_ratio_c"].default)
        if loss.policy_loss == "gspo" and dual_clip and not _saved(info):
            raise ValueError("loss.clip_ratio_c is dual-clip, which GSPO does not use: remove it, or set "
                             "loss.policy_loss: vanilla")
        if loss.use_kl_loss and loss.kl_loss_coef == 0.0:
            raise ValueError("loss.use_kl_loss is true but loss.kl_loss_coef is 0: set a coefficient such as 0.01 or turn use_kl_loss off")
        rows = roll.tasks_per_step * roll.group_size
        if upd.mini_batches > rows:
            raise ValueError(f"update.mini_batches ({upd.mini_batches}) exceeds the episodes per step "
                             f"(rollout.tasks_per_step × rollout.group_size = {rows}); lower it")
        estimator = self.credit.estimator
        if roll.group_size < 2 and estimator in ("gigpo", "grpo", "rloo"):
            raise ValueError(f"rollout.group_size must be at least 2 for {estimator} (advantages are relative "
                             f"within a group), got {roll.group_size}")
        h = self.horizon
        if h.type == "stepwise":
            if len(h.rounds) < 1 or any(b <= a for a, b in zip(h.rounds, h.rounds[1:])):
                raise ValueError(f"horizon.rounds must be a non-empty increasing list for a stepwise schedule, got {h.rounds}")
        elif len(h.rounds) > 1:
            raise ValueError(f"horizon.type is 'fixed' but horizon.rounds has {len(h.rounds)} values; "
                             "give one value or set horizon.type: stepwise")
        if self.sft is not None and not self.sft.data and self.sft.expert_tasks is None:
            raise ValueError("sft.data is empty: list expert trajectories or set sft.expert_tasks, "
                             "or remove the sft section to skip the warm start")
        return self

    def horizon_at(self, step: int) -> int | None:
        """H(k) of docs/ALGORITHMS.md §6.1 for training step ``step`` (1-indexed); None means the env's own limit."""
        h = self.horizon
        if not h.rounds:
            return self.env.max_turns
        return horizon(step, h.rounds if h.type == "stepwise" else h.rounds[0], h.steps_per_stage)

    def horizon_stage(self, step: int) -> int:
        """Index of the horizon stage that training step ``step`` is in."""
        h = self.horizon
        if h.type != "stepwise" or not h.rounds:
            return 0
        return min((step - 1) // h.steps_per_stage, len(h.rounds) - 1)


# ----- loading ------------------------------------------------------------------------------------

def yaml_value(raw: str, where: str, quoted: str) -> Any:
    """A command-line value read as YAML (``3`` a number, ``[a, b]`` a list, text otherwise); a value that reads as
    null although it is not ``null`` (``#1 rule``: a comment) is refused, naming ``where`` and the ``quoted`` form."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None and raw.strip() not in ("null", "Null", "NULL", "~"):
        raise ConfigError(f"{where}: the value reads as YAML null ('#' starts a comment); quote it: {quoted}")
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into a nested dict; values are YAML scalars or lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value with a dotted key (e.g. loss.clip_high=0.28), got {item!r}")
        value = yaml_value(raw, f"--set {item!r}", f"--set '{key}=\"{raw}\"'")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' was already set to a value, not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    cls: Any = model
    for part in path:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                cls = cand
                break
        else:
            return []
    return list(getattr(cls, "model_fields", {}))


def _explain(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    lines = []
    unknown: dict[tuple[Any, ...], list[str]] = {}  # section -> its unknown keys: one list of known keys each
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = prefix + ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
        elif not key:
            lines.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            value = err.get("input")  # a section's own check: its message names the keys, the section is noise
            got = "" if isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"'{key}': {str(err['msg']).removeprefix('Value error, ')}{got}")
    for section, names in unknown.items():
        known = _fields_at(model, section)
        named = []
        for name in names:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
            path = prefix + ".".join([*map(str, section), name])
            named.append(f"'{path}' (did you mean '{prefix}{'.'.join([*map(str, section), close[0]])}'?)"
                         if close else f"'{path}'")
        label = "unknown key" if len(names) == 1 else "unknown keys"
        lines.append(f"{label} {', '.join(named)}. Known keys here: {', '.join(known)}")
    return "bad config: " + "; ".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(source: str | Path | dict[str, Any] | None = None, overrides: list[str] | dict[str, Any] | None = None,
                kind: type[BaseModel] = TrainConfig, *, saved: bool = False) -> Any:
    """Load a config from a YAML path or a dict, apply ``--set`` overrides, validate.

    ``saved``: ``source`` is a run's own config.yaml (evaluated or resumed): settings that a new config may not
    give because they would do nothing (LoRA's with LoRA off, ...) are accepted as that run had them.
    Raises :class:`ConfigError` naming the bad key and what to change.
    """
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {yaml_problem(exc)}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
        if data is None:  # not a run on every default: an empty file is a mistake
            raise ConfigError(f"config file {str(path)!r} is empty; start from one in examples/ "
                              "(--keys lists every key)")
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    data = _merge(data, extra)
    try:
        config = kind.model_validate(data, context={"saved": saved})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, kind)) from None
    return config


def as_config(config: Any, kind: type[M]) -> M:
    """``config`` as a ``kind``: that config itself, or a dict or YAML path read by :func:`load_config`."""
    if isinstance(config, kind):
        return config
    if isinstance(config, (dict, str, Path)):
        return load_config(config, kind=kind)
    raise TypeError(f"expected a {kind.__name__}, a dict or the path of a YAML config, got {type(config).__name__}")
