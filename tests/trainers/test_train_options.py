"""Short real training runs through every update path: PPO epochs and mini-batches (recomputed old
log-probs), KL to a frozen copy or to the LoRA base, the sampler's log-probs as the ratio
denominator, every aggregation mode, a stepwise horizon, resume from a finished run."""

import json
import math
import re

import pytest

from agentgym.errors import ConfigError
from agentgym.store import RunStore
from agentgym.trainers.config import load_config
from agentgym.types import Step, Trajectory

pytestmark = pytest.mark.slow


def _train(tmp_path, tiny_model_dir, tiny_config, name, **over):
    from agentgym.trainers.rl import train

    base = {"update": {"total_steps": 2, "micro_batch_size": 8}, "rollout": {"tasks_per_step": 2, "group_size": 4},
            "eval": {"every": 0}, "checkpoint": {"every": 0, "save_final": True}}
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v}
    run = train(load_config(tiny_config(tiny_model_dir, tmp_path / name, **base)), progress=False, log=lambda _l: None)
    return run, [m for m in RunStore(run).load_metrics() if "merged_rows" in m]


def test_epochs_minibatches_and_kl_full(tmp_path, tiny_model_dir, tiny_config, capfd):
    capfd.readouterr()
    _, ms = _train(tmp_path, tiny_model_dir, tiny_config, "full",
                   update={"ppo_epochs": 2, "mini_batches": 2},
                   loss={"use_kl_loss": True, "kl_loss_type": "k3", "kl_loss_coef": 0.1})
    drawn = capfd.readouterr().err
    assert "Loading weights" not in drawn and "Writing model shards" not in drawn  # progress=False: no bars at all
    assert [m["updates"] for m in ms] == [4, 4] and not any("idle" in m for m in ms)
    assert ms[0]["sampler_logp_diff"] < 1e-4  # recomputed before any update: equals the sampler
    assert all(m["kl"] >= 0 and math.isfinite(m["ppo_kl"]) for m in ms)
    assert ms[1]["kl"] > 0  # the policy moved away from the frozen reference


def test_lora_with_kl_to_the_base_and_resume(tmp_path, tiny_model_dir, tiny_config):
    from agentgym.trainers.rl import train

    run, ms = _train(tmp_path, tiny_model_dir, tiny_config, "lora",
                     policy={"lora": {"enable": True, "r": 4, "alpha": 8}},
                     loss={"use_kl_loss": True, "kl_loss_coef": 0.1}, optim={"lr": 1e-2},
                     update={"ppo_epochs": 2})
    assert ms[1]["kl"] > 0 and (run / "checkpoints" / "step_00000002" / "adapter").is_dir()
    cfg = load_config(RunStore(run).read_config(), ["update.total_steps=3"])
    lines: list[str] = []
    train(cfg, resume=run, progress=False, log=lines.append)
    steps = [m["step"] for m in RunStore(run).load_metrics() if "merged_rows" in m]
    assert steps == [1, 2, 3]
    # config.yaml now says 3 steps; what steps 1 and 2 ran with stays on record
    (change,) = [json.loads(line) for line in (run / "config-changes.jsonl").read_text().splitlines()]
    assert change["step"] == 2 and change["changes"] == {"update.total_steps": [2, 3]}
    assert "config changed from step 3 on (recorded in config-changes.jsonl): update.total_steps 2 -> 3" in lines
    # a resume changing nothing adds nothing, also given a CONFIG that names no run directory
    train(load_config({**RunStore(run).read_config(), "run_dir": None}), resume=run, progress=False,
          log=lambda _l: None)
    assert len((run / "config-changes.jsonl").read_text().splitlines()) == 1
    assert RunStore(run).read_config()["run_dir"] == str(run)


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_aggregation_modes_and_sampler_ratio(tmp_path, tiny_model_dir, tiny_config, agg):
    _, ms = _train(tmp_path, tiny_model_dir, tiny_config, agg, loss={"loss_agg_mode": agg},
                   update={"old_logprobs": "sampler"})
    assert all(math.isfinite(m["loss"]) and m["updates"] == 1 for m in ms)


def test_stepwise_horizon_caps_turns(tmp_path, tiny_model_dir, tiny_config):
    _, ms = _train(tmp_path, tiny_model_dir, tiny_config, "horizon",
                   horizon={"type": "stepwise", "rounds": [1, 3], "steps_per_stage": 1})
    assert [m["horizon"] for m in ms] == [1, 3]
    assert ms[0]["turns"] == 1.0


def test_sft_then_rl_in_one_run(tmp_path, tiny_model_dir, tiny_config):
    run, ms = _train(tmp_path, tiny_model_dir, tiny_config, "chain",
                     sft={"expert_tasks": 12, "epochs": 30, "lr": 2e-3, "batch_size": 4, "micro_batch_size": 4},
                     eval={"every": 2, "max_tasks": 4})
    metrics = RunStore(run).load_metrics()
    before = next(m for m in metrics if "eval_before_sft/test/success" in m)
    sft = next(m for m in metrics if "sft_loss_last" in m)
    after = next(m for m in metrics if m["step"] == 0 and "eval/test/success" in m)
    assert sft["sft_loss_last"] < sft["sft_loss_first"]
    assert after["eval/test/success"] > before["eval_before_sft/test/success"]
    assert (run / "trajectories" / "expert.jsonl").exists()
    import json

    state = json.loads((run / "checkpoints" / "step_00000002" / "trainer_state.json").read_text())
    assert state["sft_done"] is True  # a resume will not train SFT again


def test_skipping_zero_advantage_sequences_changes_no_weight(tmp_path, tiny_model_dir, tiny_config):
    import torch
    from safetensors.torch import load_file

    runs = {}
    for skip in (True, False):
        runs[skip] = _train(tmp_path, tiny_model_dir, tiny_config, f"skip-{skip}", credit={"estimator": "grpo"},
                            loss={"entropy_coeff": 0.0},
                            update={"total_steps": 3, "micro_batch_size": 1, "mini_batches": 2,
                                    "skip_zero_advantage": skip})
    (run_on, on), (run_off, off) = runs[True], runs[False]
    assert sum(m["skipped_seqs"] for m in on) > 0 and all(m["skipped_seqs"] == 0 for m in off)
    assert [m["success"] for m in on] == [m["success"] for m in off]  # the same rollouts at every step
    assert [m["pg_loss"] for m in on] == pytest.approx([m["pg_loss"] for m in off], abs=1e-7)
    final = "checkpoints/step_00000003/model/model.safetensors"
    w_on, w_off = load_file(run_on / final), load_file(run_off / final)
    assert w_on.keys() == w_off.keys()
    for name, tensor in w_on.items():
        assert torch.equal(tensor, w_off[name]), name


@pytest.mark.parametrize(("update", "reason"), [  # (an agent the environment lacks is refused before the run)
    ({"max_seq_len": 4}, r"all \d+ sequences are longer than update.max_seq_len=4 tokens"),
])
def test_a_step_that_trains_on_nothing_says_why(tmp_path, tiny_model_dir, tiny_config, update, reason):
    from agentgym.trainers.rl import train

    lines: list[str] = []
    config = tiny_config(tiny_model_dir, tmp_path / "run", update={"total_steps": 1, **update},
                         rollout={"tasks_per_step": 2, "group_size": 2}, eval={"every": 0})
    train(config, progress=False, log=lines.append)  # a dict is read as load_config reads it
    (record,) = [m for m in RunStore(tmp_path / "run").load_metrics() if m.get("step") == 1 and "idle" in m]
    assert re.fullmatch(reason, record["idle"])
    assert [line for line in lines if line.startswith("step    1/1") and f"NO SIGNAL: {record['idle']}" in line]


def test_a_step_without_a_learning_signal_is_named_whatever_the_cause():
    from agentgym.trainers.rl import idle_reason

    config = load_config({})
    trained = {"sequences": 4, "dropped_long": 0, "adv_abs": 0.3, "updates": 1, "skipped_updates": 0}
    assert idle_reason(trained, [], config) is None
    assert "every advantage is 0" in idle_reason({**trained, "adv_abs": 0.0}, [], config)
    with_kl = load_config({}, ["loss.use_kl_loss=true"])  # the KL term still pulls towards the reference
    assert idle_reason({**trained, "adv_abs": 0.0}, [], with_kl) is None
    skipped = {**trained, "updates": 0, "skipped_updates": 2}
    assert idle_reason(skipped, [], config) == "all 2 optimizer steps skipped: the gradient was not finite"
    # a role that did not act in this step's episodes (the scout's failures ended them all first, say)
    scouting = [Trajectory(id="t", group_id="g", task_id="t", env="tiny-relay-v0", steps=[Step(index=0, agent="scout")])]
    only_opener = load_config({}, ["update.train_agents=[opener]"])
    assert idle_reason({**trained, "sequences": 0}, scouting, only_opener) == \
        "update.train_agents (opener) names none of the agents acting here (scout)"


def test_a_resume_follows_a_changed_learning_rate_and_schedule_and_refuses_another_model(tmp_path, tiny_model_dir,
                                                                                        tiny_config):
    from agentgym.trainers.rl import train

    run, ms = _train(tmp_path, tiny_model_dir, tiny_config, "lr", optim={"lr": 1e-3, "schedule": "linear"},
                     checkpoint={"every": 1})
    assert [m["lr"] for m in ms] == pytest.approx([1e-3, 5e-4])  # one update per step, linear over 2
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="policy.model cannot change when a run resumes"):
        train(load_config(RunStore(run).read_config(), ["policy.model=smollm2"]), resume=run, progress=False,
              log=lambda _l: None)
    with pytest.raises(ConfigError, match="update.total_steps=1, but the run is already at step 2"):
        train(load_config(RunStore(run).read_config(), ["update.total_steps=1"]), resume=run, progress=False,
              log=lambda _l: None)
    assert (run / "config.yaml").read_text() == before  # a refused resume leaves the run as it was
    train(load_config(RunStore(run).read_config(), ["update.total_steps=4", "optim.lr=2e-3"]), resume=run,
          progress=False, log=lambda _l: None)
    lrs = [m["lr"] for m in RunStore(run).load_metrics() if "merged_rows" in m]
    assert lrs == pytest.approx([1e-3, 5e-4, 2e-3 * (1 - 2 / 4), 2e-3 * (1 - 3 / 4)])  # the new schedule at step 3


def test_dynamic_sampling_in_a_training_run(tmp_path, tiny_model_dir, tiny_config):
    run, ms = _train(tmp_path, tiny_model_dir, tiny_config, "dynamic", rollout={"dynamic_sampling": True,
                                                                                "max_sampling_tries": 2})
    assert len(ms) == 2
    for m in ms:
        assert m["groups_sampled"] == 2 * m["sampling_tries"] and m["groups_informative"] <= m["groups_sampled"]
        stored = RunStore(run).load_trajectories(f"train-{m['step']:06d}")
        assert len(stored) == 4 * m["groups_sampled"]  # every group rolled out is on disk
        assert m["success"] == pytest.approx(sum(t.success for t in stored) / len(stored))  # of every episode


def test_gspo_in_a_training_run(tmp_path, tiny_model_dir, tiny_config):
    _, ms = _train(tmp_path, tiny_model_dir, tiny_config, "gspo", loss={"policy_loss": "gspo"},
                   update={"ppo_epochs": 2})
    assert [m["updates"] for m in ms] == [2, 2] and all(math.isfinite(m["loss"]) for m in ms)
    assert ms[0]["ppo_kl"] != 0  # the second epoch saw the first one's update through the step ratios
    with pytest.raises(ConfigError, match="clip_ratio_c is dual-clip, which GSPO does not use"):
        load_config({"loss": {"policy_loss": "gspo", "clip_ratio_c": 5.0}})
