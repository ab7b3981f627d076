"""Run configs: YAML loading, --set overrides, and errors that name the key and the fix."""

from pathlib import Path

import pytest

from agentgym.errors import ConfigError
from agentgym.trainers.config import SFTConfig, TrainConfig, load_config, parse_overrides

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, TrainConfig)
    assert cfg.loss.loss_agg_mode == "token-mean" and cfg.loss.clip_ratio_c == 3.0


def test_overrides_are_dotted_and_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  clip_high: 0.2\nrollout:\n  group_size: 4\n")
    cfg = load_config(path, ["loss.clip_high=0.28", "horizon.type=stepwise", "horizon.rounds=[2, 4]",
                             "loss.clip_ratio_c=null", "credit.gamma=0.9"])
    assert cfg.loss.clip_high == 0.28 and cfg.rollout.group_size == 4
    assert cfg.horizon.rounds == [2, 4] and cfg.loss.clip_ratio_c is None
    assert cfg.credit.gamma == 0.9


def test_autocast_reads_yaml_on_and_off(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("policy:\n  autocast: off\n")  # YAML 1.1: the boolean false
    assert load_config(path).policy.autocast == "off"
    assert load_config(path, ["policy.autocast=on"]).policy.autocast == "auto"
    with pytest.raises(ConfigError, match="policy.autocast"):
        load_config(path, ["policy.autocast=fp8"])


def test_parse_overrides_rejects_missing_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["loss.clip_high"])


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown key 'loss.clip_hihg' \(did you mean 'loss.clip_high'\?\)\. Known keys here: loss_agg_mode"):
        load_config({}, ["loss.clip_hihg=0.3"])


def test_unknown_keys_of_one_section_share_one_list_of_known_keys():
    with pytest.raises(ConfigError) as err:
        load_config({"command": "rollout", "suite": "test", "n": 2, "lsos": {}})
    assert "unknown keys 'command', 'suite', 'n', 'lsos' (did you mean 'loss'?). Known keys here: name," in str(err.value)
    assert str(err.value).count("Known keys here") == 1


def test_bad_value_names_key():
    with pytest.raises(ConfigError, match=r"'loss.clip_low'.*got -0.1"):
        load_config({}, ["loss.clip_low=-0.1"])


@pytest.mark.parametrize("sets, message", [
    (["loss.clip_ratio_c=0.5"], "loss.clip_ratio_c must be greater than 1"),
    (["loss.use_kl_loss=true", "loss.kl_loss_coef=0"], "kl_loss_coef is 0"),
    (["rollout.group_size=1"], "rollout.group_size must be at least 2"),
    (["rollout.tasks_per_step=1", "rollout.group_size=2", "update.mini_batches=4"], "update.mini_batches"),
    (["horizon.type=stepwise", "horizon.rounds=[4, 2]"], "increasing"),
    (["horizon.rounds=[4, 8]"], "horizon.type: stepwise"),
    (["context.type=window"], "context.window"),
    (["context.type=summary"], "context.max_tokens is not set"),
    (["context.window=4"], "context.window applies to context.type 'window', but context.type is 'full'"),
    (["context.type=window", "context.window=4", "context.max_summaries=2"],
     "context.max_summaries applies to context.type 'summary', but context.type is 'window'"),
    # values torch or peft would refuse only after the model has loaded
    (["optim.betas=[0.9, 1.5]"], r"'optim.betas'.*each AdamW beta must be in \[0, 1\), got \[0.9, 1.5\]"),
    (["policy.lora.target_modules=[]"], "give 'all-linear', a list of module names such as"),
    (["context.options.foo=1"], r"context.options \(foo\): no context manager takes options"),
    (["sft.expert_tasks=4", "sft.batch_size=2", "sft.micro_batch_size=8"],
     r"sft.micro_batch_size \(8\) must not exceed sft.batch_size \(2\)"),  # as agentgym sft refuses it
    (["rollout.system_prompt=#1 rule: be brief"], "the value reads as YAML null"),  # not the default prompt, silently
    # settings of a feature that is off: training would go on without it
    (["policy.lora.r=8"], "policy.lora.r applies to LoRA training, but policy.lora.enable is false"),
    (["loss.kl_loss_coef=0.05"], "loss.kl_loss_coef applies to the KL loss, but loss.use_kl_loss is false"),
])
def test_cross_field_checks(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config({}, sets)


def test_a_saved_run_config_loads_with_settings_a_new_config_may_not_give():
    # a run an earlier version trained with LoRA settings but LoRA off (ignored then): it still evaluates and resumes
    earlier = {"policy": {"lora": {"r": 8}}, "loss": {"kl_loss_coef": 0.05}, "context": {"options": {"x": 1}}}
    with pytest.raises(ConfigError, match="policy.lora.r applies to LoRA training"):
        load_config(earlier)
    saved = load_config(earlier, saved=True)
    assert (saved.policy.lora.r, saved.policy.lora.enable, saved.loss.kl_loss_coef) == (8, False, 0.05)
    assert load_config({}, ["policy.lora.enable=true", "policy.lora.target_modules=.*(q_proj|v_proj)"]).policy.lora \
        .target_modules == ".*(q_proj|v_proj)"  # a regex, as peft takes it


def test_horizon_schedule_matches_tv_i():
    cfg = load_config({}, ["horizon.type=stepwise", "horizon.rounds=[10, 20, 30]", "horizon.steps_per_stage=100"])
    assert [cfg.horizon_at(k) for k in (1, 100, 101, 200, 201, 1000)] == [10, 10, 20, 20, 30, 30]
    cfg = load_config({}, ["horizon.type=stepwise", "horizon.rounds=[8, 12, 15]", "horizon.steps_per_stage=80"])
    assert [cfg.horizon_at(k) for k in (80, 81, 160, 161)] == [8, 12, 12, 15]
    assert cfg.horizon_stage(161) == 2


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_sft_config_needs_data():
    with pytest.raises(ConfigError, match="sft.data is empty"):
        load_config({}, kind=SFTConfig)
    assert load_config({"sft": {"data": ["runs/expert"]}}, kind=SFTConfig).sft.epochs == 2.0


def test_every_field_has_help():
    from pydantic import BaseModel

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no help text"
            ann = field.annotation
            for cand in (ann, *getattr(ann, "__args__", ())):
                if isinstance(cand, type) and issubclass(cand, BaseModel):
                    walk(cand)
    walk(TrainConfig)
    walk(SFTConfig)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path):
    if path.name.endswith("_sft.yaml"):  # for `agentgym sft CONFIG --data DIR`
        load_config(path, ["sft.data=[runs/expert]"], kind=SFTConfig)
    else:
        load_config(path)


def test_written_config_loads_back(tmp_path):
    from agentgym.store import RunStore
    from agentgym.trainers.rl import config_record

    cfg = load_config({}, ["credit.estimator=grpo", "loss.clip_high=0.28", "horizon.type=stepwise", "horizon.rounds=[2, 4]"])
    store = RunStore(tmp_path)
    store.write_config(config_record(cfg))
    assert load_config(store.read_config()) == cfg


def test_sft_data_paths_are_checked_except_when_a_run_resumes():
    from agentgym.trainers.rollouts import check_inputs

    cfg = load_config({"sft": {"data": ["/nowhere/expert"]}})
    with pytest.raises(ConfigError, match="'/nowhere/expert' is neither a run directory nor a .jsonl file"):
        check_inputs(cfg, train_suite=True)
    check_inputs(cfg, train_suite=True, sft_data=False)  # a resumed run may be past its SFT stage


def test_sft_data_reads_run_directories_without_writing_into_them(tmp_path):
    from agentgym.trainers.rollouts import check_inputs
    from agentgym.trainers.sft import load_trajectories

    (tmp_path / "notes").mkdir()
    cfg = load_config({"sft": {"data": [str(tmp_path / "notes")]}})
    with pytest.raises(ConfigError, match="notes' is a directory without trajectories/"):
        check_inputs(cfg, train_suite=True)
    with pytest.raises(ConfigError, match="notes' is a directory without trajectories/"):
        load_trajectories([str(tmp_path / "notes")])
    assert not list((tmp_path / "notes").iterdir())
    from agentgym.store import RunStore
    from agentgym.types import Trajectory

    store = RunStore(tmp_path / "expert")
    store.append_trajectory(Trajectory(id="t", group_id="g", task_id="x", env="household-v0"), name="expert")
    same = [str(tmp_path / "expert"), str(tmp_path / "expert" / "trajectories" / "expert.jsonl")]
    assert [t.id for t in load_trajectories(same)] == ["t"]  # one file named twice is read once


def test_train_and_sft_take_a_config_a_dict_or_a_yaml_path(tmp_path):
    from agentgym.trainers.config import as_config

    config = load_config({}, ["update.total_steps=3"])
    assert as_config(config, TrainConfig) is config
    assert as_config({"update": {"total_steps": 3}}, TrainConfig) == config
    (tmp_path / "c.yaml").write_text("update:\n  total_steps: 3\n")
    assert as_config(str(tmp_path / "c.yaml"), TrainConfig) == config
    with pytest.raises(ConfigError, match="sft.data is empty"):
        as_config({}, SFTConfig)
    with pytest.raises(TypeError, match="expected a TrainConfig, a dict or the path of a YAML config, got list"):
        as_config([], TrainConfig)


@pytest.mark.parametrize("setting", ["optim.lr=on", "rollout.max_sampling_tries=true", "loss.clip_ratio_c=no"])
def test_a_yes_no_value_is_not_taken_for_a_number(setting):
    # pydantic would read lr: on as 1.0; YAML 1.1 makes on/off/yes/no bools
    key = setting.split("=")[0]
    with pytest.raises(ConfigError, match=f"'{key}': a yes/no value is not a number"):
        load_config({}, [setting])
    assert load_config({}, ["rollout.tool_schema=no"]).rollout.tool_schema is False  # a yes/no setting takes one
